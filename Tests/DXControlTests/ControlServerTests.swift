@testable import DXControl
import DXTestSupport
import Synchronization
import Testing

/// A client that goes away stops what it asked for at once, even when nothing is written to it;
/// a client that only half-closes after sending still gets its answers.
@Suite struct ControlServerTests {
    /// `wait` runs until cancelled (a scan step that sends nothing for a while); `soon` answers
    /// after 300 ms. Records what happened to each.
    final class Recorder: ControlHandler {
        let cancelled = Mutex<[String]>([])
        let started = Mutex<[String]>([])

        func handle(_ request: RPCRequest, context: ControlContext) async throws -> JSONValue {
            started.withLock { $0.append(request.method) }
            switch request.method {
            case "wait":
                try await sleep(.seconds(600), for: request.method)
                return .string("waited")
            case "soon":
                try await sleep(.milliseconds(300), for: request.method)
                return .string("done")
            default:
                throw RPCError(code: RPCError.methodNotFoundCode, message: "no \(request.method)")
            }
        }

        private func sleep(_ duration: Duration, for method: String) async throws {
            do {
                try await Task.sleep(for: duration)
            } catch {
                cancelled.withLock { $0.append(method) }
                throw error
            }
        }
    }

    /// Runs a server on a socket in a temporary directory for the duration of `body`.
    func withServer(_ body: (String, Recorder) async throws -> Void) async throws {
        let dir = TemporaryDirectory("dxctl")
        let path = dir.file("control.sock")
        let recorder = Recorder()
        let listening = Mutex(false)
        let server = ControlServer(listener: .path(path), handler: recorder, admit: { _ in .admit(.service) },
                                   onListening: { listening.withLock { $0 = true } })
        let running = Task { try await server.run() }
        defer { running.cancel() }
        try await eventually("the server listening") { listening.withLock { $0 } }
        try await body(path, recorder)
    }

    @Test func aClientThatClosesHasItsRequestCancelledWithoutAWrite() async throws {
        try await withServer { path, recorder in
            let client = try SilentClient(socketPath: path)
            try client.send(#"{"jsonrpc":"2.0","id":1,"method":"wait"}"#)
            try await eventually("the request started") { recorder.started.withLock { $0 == ["wait"] } }
            client.close()
            // Nothing is ever written on this connection: only the hang-up can tell.
            try await eventually("the request cancelled", seconds: 20) { recorder.cancelled.withLock { $0 == ["wait"] } }
        }
    }

    @Test func aRequestReadAfterItsClientHungUpRunsCancelled() async throws {
        try await withServer { path, recorder in
            // Sent and closed at once: the request may be read from the buffer before or after
            // the server sees the hang-up; either way it must not run on uncancelled.
            for _ in 0..<20 {
                let client = try SilentClient(socketPath: path)
                try client.send(#"{"jsonrpc":"2.0","id":1,"method":"wait"}"#)
                client.close()
            }
            try await eventually("every request cancelled", seconds: 20) { recorder.cancelled.withLock { $0.count } == 20 }
            #expect(recorder.started.withLock { $0.count } == 20)
        }
    }

    /// The set's own rules, without sockets: cancelled once, cancelled for good; what it holds
    /// then counts against the limit.
    @Test func aCancelledTaskSetCancelsWhatIsAddedLater() async throws {
        let set = TaskSet()
        let ran = Mutex<[Bool]>([])
        set.add { try? await Task.sleep(for: .seconds(600)); ran.withLock { $0.append(Task.isCancelled) } }
        #expect(set.count == 1)
        set.cancelAll()
        #expect(set.count <= 1)
        for _ in 0..<3 { set.add { ran.withLock { $0.append(Task.isCancelled) } } }
        await set.waitAll()
        #expect(ran.withLock { $0 } == [true, true, true, true])
        try await eventually("the set emptied") { set.count == 0 }
    }

    @Test func aClientThatHalfClosesGetsItsAnswer() async throws {
        try await withServer { path, recorder in
            let client = try SilentClient(socketPath: path)
            defer { client.close() }
            try client.send(#"{"jsonrpc":"2.0","id":7,"method":"soon"}"#)
            client.shutdownWrite()
            let answer = client.drain(quietMs: 5000)
            #expect(answer.lines.count == 1)
            #expect(answer.lines.first?["id"] == .number(7))
            #expect(answer.lines.first?["result"] == .string("done"))
            #expect(recorder.cancelled.withLock { $0 }.isEmpty)
        }
    }

    @Test func aHalfClosedClientThatThenClosesHasItsRequestCancelled() async throws {
        try await withServer { path, recorder in
            let client = try SilentClient(socketPath: path)
            try client.send(#"{"jsonrpc":"2.0","id":1,"method":"wait"}"#)
            client.shutdownWrite()
            try await eventually("the request started") { recorder.started.withLock { $0 == ["wait"] } }
            // Half-closed: still running (it would answer if it finished).
            try await Task.sleep(for: .milliseconds(200))
            #expect(recorder.cancelled.withLock { $0 }.isEmpty)
            client.close()
            try await eventually("the request cancelled", seconds: 20) { recorder.cancelled.withLock { $0 == ["wait"] } }
        }
    }
}
