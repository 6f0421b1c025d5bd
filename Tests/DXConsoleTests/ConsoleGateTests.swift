@testable import DXConsole
import Testing

@Suite("The console's gate")
struct ConsoleGateTests {
    let token = String(repeating: "ab", count: 32)
    var gate: ConsoleGate { ConsoleGate(token: token, port: 8642) }
    var host: (String, String) { ("Host", "127.0.0.1:8642") }

    @Test func theTokenInTheURLOpensThePageAndTheStreams() {
        #expect(gate.decide(method: "GET", target: "/?token=\(token)", headers: [host]) == .allow(.page))
        #expect(gate.decide(method: "GET", target: "/api/events?token=\(token)", headers: [("host", "localhost:8642")]) == .allow(.events))
        #expect(gate.decide(method: "GET", target: "/api/events-worker.js?token=\(token)", headers: [host]) == .allow(.eventsWorker))
        guard case .refuse(403, _) = gate.decide(method: "GET", target: "/api/events-worker.js", headers: [host]) else {
            Issue.record("the events' worker was served without the token")
            return
        }
        #expect(gate.decide(method: "GET", target: "/api/state", headers: [host, ("X-Dexa-Token", token)]) == .allow(.state))
        #expect(gate.decide(method: "GET", target: "/api/worklist", headers: [host, ("X-Dexa-Token", token)]) == .allow(.worklist))
        guard case .refuse(405, _) = gate.decide(method: "POST", target: "/api/worklist", headers: [host, ("X-Dexa-Token", token)]) else {
            Issue.record("POST on /api/worklist was not refused")
            return
        }
        guard case .refuse(403, _) = gate.decide(method: "GET", target: "/api/worklist", headers: [host]) else {
            Issue.record("the worklist was served without the token")
            return
        }
    }

    @Test(arguments: ["", "?token=", "?token=abab", "?tok=x", "?token=\(String(repeating: "ab", count: 31))ac"])
    func withoutTheRightToken403(query: String) {
        guard case .refuse(403, _) = gate.decide(method: "GET", target: "/\(query)", headers: [host]) else {
            Issue.record("a page was served for \(query)")
            return
        }
    }

    /// A page that rebinds its own name to 127.0.0.1 still sends its own name.
    @Test(arguments: ["evil.example:8642", "127.0.0.1", "127.0.0.1:80", "localhost", "127.0.0.2:8642", ""])
    func anotherHostIsRefused(host: String) {
        guard case .refuse(403, _) = gate.decide(method: "GET", target: "/?token=\(token)", headers: [("Host", host)]) else {
            Issue.record("Host \(host) was let in")
            return
        }
        guard case .refuse(403, _) = gate.decide(method: "GET", target: "/?token=\(token)", headers: []) else {
            Issue.record("no Host was let in")
            return
        }
    }

    /// Changes only by POST, with the header: a link or a form on another page cannot set it.
    @Test func changesNeedPostAndTheHeader() {
        #expect(gate.decide(method: "POST", target: "/api/stop", headers: [host, ("x-dexa-token", token)]) == .allow(.stop))
        #expect(gate.decide(method: "POST", target: "/api/call", headers: [host, ("X-Dexa-Token", token)]) == .allow(.call))
        guard case .refuse(403, _) = gate.decide(method: "POST", target: "/api/call?token=\(token)", headers: [host]) else {
            Issue.record("a change was accepted with the token in the query only")
            return
        }
        guard case .refuse(405, _) = gate.decide(method: "GET", target: "/api/call?token=\(token)", headers: [host]) else {
            Issue.record("GET on /api/call was not refused")
            return
        }
        guard case .refuse(404, _) = gate.decide(method: "GET", target: "/etc/passwd?token=\(token)", headers: [host]) else {
            Issue.record("an unknown path was not 404")
            return
        }
    }

    @Test func garbageTargetsAreRefusedNotTrapped() {
        for target in ["", "?", "??", "/?token", "/?=&&=", "/%zz?token=%zz", String(repeating: "/", count: 10_000), "/?token=\(token)&token=x"] {
            guard case .refuse = gate.decide(method: "GET", target: target, headers: [host]) else {
                Issue.record("\(target.prefix(40)) was allowed")
                continue
            }
        }
        #expect(ConsoleGate.split("/a?b=%41+c&d").query == ["b": "A c", "d": ""])
    }

    @Test func tokensAreFreshAndLong() {
        let a = ConsoleGate.newToken(), b = ConsoleGate.newToken()
        #expect(a.count == 64 && b.count == 64 && a != b)
        #expect(a.allSatisfy { $0.isHexDigit })
        #expect(ConsoleGate.constantTimeEqual(a, a) && !ConsoleGate.constantTimeEqual(a, b) && !ConsoleGate.constantTimeEqual(a, String(a.dropLast())))
    }
}
