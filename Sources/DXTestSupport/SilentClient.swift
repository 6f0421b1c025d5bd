import DXControl
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A control-socket client (the daemon is its peer) that sends its lines and then reads nothing until told to (a
/// technologist's `dexa exam run` suspended with Ctrl-Z, a console whose browser froze): what
/// the daemon does meanwhile is what a test looks at.
public final class SilentClient: Sendable {
    private let fd: Int32

    public init(socketPath path: String) throws {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw PeerFailure("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            Glibc.close(s)
            throw PeerFailure("socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let why = String(cString: strerror(errno))
            Glibc.close(s)
            throw PeerFailure("connect \(path): \(why)")
        }
        fd = s
    }

    /// Sends one line (a newline is added).
    public func send(_ line: String) throws {
        let bytes = Array((line + "\n").utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            guard n > 0 else { throw PeerFailure("write: \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    /// Everything the daemon has sent, read until nothing more comes for `quietMs`: its lines,
    /// parsed (a line that is not JSON is left out), and how many bytes they were.
    public func drain(quietMs: Int32 = 1000) -> (lines: [JSONValue], bytes: Int) {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, quietMs) > 0 else { break }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            data += buffer[0..<n]
        }
        let lines = data.split(separator: 0x0A).compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0)) }
        return (lines, data.count)
    }

    /// Half-closes: the daemon reads end of input, and can still write (what `socat` does
    /// after sending its request).
    public func shutdownWrite() { _ = shutdown(fd, Int32(SHUT_WR)) }

    public func close() { _ = Glibc.close(fd) }
}
