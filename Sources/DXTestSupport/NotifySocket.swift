import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`: records every message with
/// the time it arrived, on a thread of its own.
public final class NotifyListener: Sendable {
    public let path: String
    private let fd: Int32
    private let messages = MessageBox()

    final class MessageBox: Sendable {
        let m = Mutex<[(Date, String)]>([])
        func withLock<R>(_ body: (inout [(Date, String)]) -> R) -> R { m.withLock { body(&$0) } }
    }

    public init(path: String) throws {
        self.path = path
        unlink(path)
        let sock = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        fd = sock
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes + [0]) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard sock >= 0, rc == 0 else { throw TestTimeout("cannot bind \(path)") }
        let box = messages
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(sock, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return }
                let text = String(decoding: buffer.prefix(n), as: UTF8.self)
                box.withLock { $0.append((Date(), text)) }
            }
        }
        thread.start()
    }

    public var received: [(Date, String)] { messages.withLock { $0 } }

    /// Messages that contain `key` (e.g. "WATCHDOG=1").
    public func times(of key: String) -> [Date] {
        received.filter { $0.1.split(separator: "\n").contains { $0 == key || $0.hasPrefix(key) } }.map(\.0)
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        unlink(path)
    }
}
