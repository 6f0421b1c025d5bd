import Foundation

/// Who may use the console and what they asked for: the pure part of every HTTP request, kept
/// apart from the sockets so that each rule has a test.
///
/// The console serves 127.0.0.1 only, so other machines cannot reach it; other users of this
/// machine can, and a web page open in the technologist's own browser can send it requests.
/// Three rules keep both out (the way notebook servers do, docs/console-ui.md):
/// - **The session token.** A random 256-bit token in the URL the console prints; every
///   request carries it (the page's URL, `?token=`, or the `X-Dexa-Token` header), compared in
///   constant time. Without it: 403.
/// - **The Host header** must name this console (127.0.0.1 or localhost, with its port): a
///   page that rebinds its own name to 127.0.0.1 (DNS rebinding) sends its own name and is
///   refused.
/// - **Changes only by POST with the header** (`X-Dexa-Token`): a form on another page cannot
///   set a header, and a cross-origin script cannot send one without the browser asking first,
///   which the console never allows.
public struct ConsoleGate: Sendable {
    public let token: String
    public let port: Int

    public init(token: String, port: Int) { self.token = token; self.port = port }

    /// A fresh session token: 32 random bytes, hex.
    public static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    public enum Route: Equatable, Sendable {
        case page
        case state
        case events
        /// The shared worker that keeps one event stream for all of a browser's tabs.
        case eventsWorker
        case call
        case stop
        /// The exam's report as PDF (`?exam=N`).
        case report
        /// A site's image with its analysis drawn over it, PNG (`?exam=N&site=S`).
        case siteImage
        /// Today's scheduled patients from the hospital's worklist.
        case worklist
    }

    public enum Decision: Equatable, Sendable {
        case allow(Route)
        case refuse(status: Int, reason: String)
    }

    /// The decision for a request: its method, its target (path and query) and its headers
    /// (names in any case).
    public func decide(method: String, target: String, headers: [(String, String)]) -> Decision {
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
        guard let host = header("host"), hostIsOurs(host) else {
            return .refuse(status: 403, reason: "this console answers only to 127.0.0.1:\(port) or localhost:\(port)")
        }
        let (path, query) = Self.split(target)
        let presented = header("x-dexa-token") ?? query["token"]
        guard let presented, Self.constantTimeEqual(presented, token) else {
            return .refuse(status: 403, reason: "the console's session token is missing or wrong: open the URL dexa-console printed")
        }
        switch (method, path) {
        case ("GET", "/"), ("GET", "/index.html"): return .allow(.page)
        case ("GET", "/api/state"): return .allow(.state)
        case ("GET", "/api/events"): return .allow(.events)
        case ("GET", "/api/events-worker.js"): return .allow(.eventsWorker)
        case ("GET", "/api/report"): return .allow(.report)
        case ("GET", "/api/site-image"): return .allow(.siteImage)
        case ("GET", "/api/worklist"): return .allow(.worklist)
        case ("POST", "/api/call"), ("POST", "/api/stop"):
            // Changes need the header, never the query alone (a link or a form cannot set it).
            guard header("x-dexa-token") != nil else {
                return .refuse(status: 403, reason: "changes need the X-Dexa-Token header")
            }
            return .allow(path == "/api/call" ? .call : .stop)
        case (_, "/"), (_, "/index.html"), (_, "/api/state"), (_, "/api/events"), (_, "/api/events-worker.js"), (_, "/api/call"), (_, "/api/stop"),
             (_, "/api/report"), (_, "/api/site-image"), (_, "/api/worklist"):
            return .refuse(status: 405, reason: "\(method) is not allowed on \(path)")
        default:
            return .refuse(status: 404, reason: "no such page: \(path)")
        }
    }

    func hostIsOurs(_ host: String) -> Bool {
        let h = host.lowercased()
        return h == "127.0.0.1:\(port)" || h == "localhost:\(port)"
    }

    /// The path and the query's parameters (percent-decoded; the last of a repeated name).
    static func split(_ target: String) -> (path: String, query: [String: String]) {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = parts.first.map(String.init) ?? "/"
        var query: [String: String] = [:]
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let k = kv.first.flatMap({ String($0).removingPercentEncoding }) else { continue }
                query[k] = kv.count == 2 ? (String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
            }
        }
        return (path, query)
    }

    /// Equal strings, in a time that does not depend on where they first differ.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) { diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
        return diff == 0
    }
}
