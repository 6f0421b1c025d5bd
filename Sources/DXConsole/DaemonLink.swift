import DXControl
import Foundation

/// The console's one standing connection to dexad, as the user who started the console (the
/// daemon reads the peer's credentials: roles, audit and refusals are its own). It subscribes
/// to the device's events and hands every notification (events, and the progress, steps and
/// warnings of the exams the console started) to each page that listens; when the daemon goes
/// away it says so to them and connects again every second.
///
/// The connection is the exam's lifeline too: dexad stops a scan whose client is gone, so a
/// console that dies leaves X-rays off.
public actor DaemonLink {
    public let socketPath: String
    private var connection: ControlConnection?
    private var listeners: [Int: AsyncStream<String>.Continuation] = [:]
    private var nextListener = 0
    /// How many times the link has been made (the page tells a reconnection by it).
    public private(set) var generation = 0

    public init(socketPath: String) { self.socketPath = socketPath }

    public var isConnected: Bool { connection != nil }

    /// Connects and keeps connecting until cancelled.
    public func run() async {
        while !Task.isCancelled {
            do {
                _ = try await ControlConnection.with(socketPath: socketPath) { connection in
                    // The exams' notifications too: an exam run from the CLI shows its
                    // progress and image here as one started from the page does.
                    _ = try await connection.call("events.subscribe", .object(["exams": .bool(true)]))
                    await self.connected(connection)
                    for await n in connection.notifications {
                        await self.publish(Self.message(kind: n.method, n.params))
                    }
                    return true
                }
            } catch {}
            disconnected()
            try? await Task.sleep(for: .seconds(1))
        }
        disconnected()
    }

    private func connected(_ c: ControlConnection) {
        connection = c
        generation += 1
        publish(Self.message(kind: "daemon", .object(["connected": .bool(true), "generation": .number(Double(generation))])))
    }

    private func disconnected() {
        guard connection != nil else { return }
        connection = nil
        publish(Self.message(kind: "daemon", .object(["connected": .bool(false), "generation": .number(Double(generation))])))
    }

    /// Calls `method` over the standing connection.
    public func call(_ method: String, _ params: JSONValue?) async throws -> JSONValue {
        guard let connection else { throw ControlClientError.unreachable(path: socketPath, reason: "not connected") }
        return try await connection.call(method, params)
    }

    private var nextCall = 0

    /// Starts `method` over the standing connection and returns at once with a number; its
    /// result (or error) goes to every page as `call.result` `{call_id, method, result|error}`.
    public func startCall(_ method: String, _ params: JSONValue?) -> Int {
        nextCall += 1
        let id = nextCall
        Task {
            var message: [String: JSONValue] = ["call_id": .number(Double(id)), "method": .string(method)]
            do {
                message["result"] = try await self.call(method, params)
            } catch let e as RPCError {
                message["error"] = .object(["code": .number(Double(e.code)), "message": .string(e.message)])
            } catch {
                message["error"] = .object(["message": .string("\(error)")])
            }
            self.publish(Self.message(kind: "call.result", .object(message)))
        }
        return id
    }

    /// Streams at once at most: a browser's pages share one (the page's shared worker), so
    /// three are three browsers, or pages of a browser without shared workers, where each
    /// holds one of its six connections to a server and three leave three for requests and
    /// Stop. A page refused a stream still polls the state every second.
    public static let maximumListeners = 3

    /// A stream of server-sent-event messages (`event: KIND`, `data: JSON`) for one page, the
    /// first saying whether the daemon is connected.
    public func listen() -> (id: Int, stream: AsyncStream<String>)? {
        guard listeners.count < Self.maximumListeners else { return nil }
        let (stream, sink) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        nextListener += 1
        listeners[nextListener] = sink
        sink.yield(Self.message(kind: "daemon", .object(["connected": .bool(connection != nil), "generation": .number(Double(generation))])))
        return (nextListener, stream)
    }

    /// Event streams open now (one per browser whose pages share a worker, one per page otherwise).
    public var listenerCount: Int { listeners.count }

    public func stopListening(_ id: Int) {
        listeners.removeValue(forKey: id)?.finish()
    }

    private func publish(_ message: String) {
        for sink in listeners.values { sink.yield(message) }
    }

    /// One server-sent event: its kind and its data, one line of JSON.
    static func message(kind: String, _ data: JSONValue?) -> String {
        let json = (try? JSONEncoder().encode(data ?? .null)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
        let safeKind = kind.filter { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" }
        return "event: \(safeKind)\ndata: \(json)\n\n"
    }
}
