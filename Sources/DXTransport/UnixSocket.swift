#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A blocking Unix stream socket: enough for the simulator link, where one reader thread
/// per connection is the simplest correct design.
public struct UnixSocket: Sendable {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    static func address(_ path: String) throws(TransportError) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { throw .unreachable("socket path longer than \(capacity - 1) bytes: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return addr
    }

    private static func makeSocket() throws(TransportError) -> Int32 {
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw .io("socket: \(errnoText())") }
        return fd
    }

    public static func connect(path: String) throws(TransportError) -> UnixSocket {
        var addr = try address(path)
        let fd = try makeSocket()
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let why = errnoText()
            Glibc.close(fd)
            throw .unreachable("\(path): \(why)")
        }
        return UnixSocket(fd: fd)
    }

    /// Binds and listens on `path`, replacing a stale socket file left by a crash.
    public static func listen(path: String, backlog: Int32 = 8) throws(TransportError) -> UnixSocket {
        var addr = try address(path)
        let fd = try makeSocket()
        unlink(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0, Glibc.listen(fd, backlog) == 0 else {
            let why = errnoText()
            Glibc.close(fd)
            throw .io("bind \(path): \(why)")
        }
        return UnixSocket(fd: fd)
    }

    /// Blocks until a peer connects; nil when the listening socket was shut down.
    public func accept() -> UnixSocket? {
        while true {
            let c = Glibc.accept(fd, nil, nil)
            if c >= 0 { return UnixSocket(fd: c) }
            if errno == EINTR { continue }
            return nil
        }
    }

    /// Reads what is there (blocking); an empty array means the peer closed.
    public func read(max: Int = 65_536) throws(TransportError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, max) }
            if n >= 0 { return Array(buffer.prefix(n)) }
            if errno == EINTR { continue }
            throw .io("read: \(errnoText())")
        }
    }

    public func writeAll(_ bytes: [UInt8]) throws(TransportError) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n > 0 { sent += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw .disconnected("write: \(errnoText())")
        }
    }

    /// Wakes any reader blocked on this socket.
    public func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    public func close() { _ = Glibc.close(fd) }
}

func errnoText() -> String { String(cString: strerror(errno)) }
