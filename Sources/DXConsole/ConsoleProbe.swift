import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Whether a console answers to a URL it printed (`http://127.0.0.1:PORT/?token=T`): its events'
/// worker script, asked with that token, answers 200 (a route the gate checks that asks dexad
/// nothing, so a busy dexad cannot make a running console look absent). A console restarted
/// since the URL was written has another token and answers 403; none on the port, no answer.
public enum ConsoleProbe {
    public static func answers(_ url: String, timeoutMs: Int = 1000) async -> Bool {
        guard let components = URLComponents(string: url), components.host == "127.0.0.1", let port = components.port.flatMap({ UInt16(exactly: $0) }),
              let token = components.queryItems?.first(where: { $0.name == "token" })?.value,
              token.allSatisfy({ $0.isHexDigit }) else { return false }
        return await Task.detached { statusLine(port: port, token: token, timeoutMs: timeoutMs)?.hasPrefix("HTTP/1.1 200") == true }.value
    }

    /// The first line of the answer to `GET /api/events-worker.js`, nil without one within the time.
    static func statusLine(port: UInt16, token: String, timeoutMs: Int) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(port.bigEndian)
        address.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET /api/events-worker.js HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nX-Dexa-Token: \(token)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return nil }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while !answer.contains(0x0A) && answer.count < 4096 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            answer += buffer[0..<n]
        }
        guard let end = answer.firstIndex(of: 0x0A) else { return nil }
        return String(decoding: answer[..<end], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
