import DXControl
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The technologist's console: a web page on 127.0.0.1 that runs the day through dexad's
/// control socket (docs/console-ui.md). It holds no state of its own but the session token:
/// every figure on the page is the daemon's, asked for again every second and on every event.
public struct ConsoleServer: Sendable {
    public let socketPath: String
    public let token: String
    /// The DICOM settings whose worklist peer lists the day's scheduled patients.
    public let dicomConfigPath: String
    /// The QC phantom's file, for the page's daily QC scan (none: the page says how to set it).
    public let qcPhantomPath: String?
    /// The day's scheduled patients, asked of the worklist in the background.
    let scheduled: ScheduledPatients
    let logger: Logger
    let refusals = RefusalLog()

    public init(socketPath: String, token: String = ConsoleGate.newToken(), dicomConfigPath: String = "/etc/dexa/dicom.conf",
                qcPhantomPath: String? = nil, logger: Logger = Logger(label: "dexa-console")) {
        self.socketPath = socketPath
        self.token = token
        self.dicomConfigPath = dicomConfigPath
        self.qcPhantomPath = qcPhantomPath
        scheduled = ScheduledPatients(configPath: dicomConfigPath)
        self.logger = logger
    }

    /// The largest request body read (a checklist or an exam's creation is a few hundred bytes;
    /// far below dexad's 1 MiB line, which a longer call would pass and so lose the exam's
    /// connection).
    static let maximumBody = 64 << 10
    /// Connections served at once; more are closed at once (a local user opening thousands
    /// would otherwise take the descriptors Stop needs).
    static let maximumConnections = 64
    /// A request must arrive whole within this (a connection that sends nothing is closed).
    static let requestTimeout: Duration = .seconds(10)

    /// Binds 127.0.0.1:`port` (0: any free port), calls `ready` with the port bound, and serves
    /// until cancelled.
    public func run(port: Int, ready: @escaping @Sendable (Int) -> Void) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        guard let bound = server.channel.localAddress?.port else { throw ConsoleError("the console's socket has no port") }
        let gate = ConsoleGate(token: token, port: bound)
        let link = DaemonLink(socketPath: socketPath)
        let open = ConnectionCount()
        ready(bound)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await link.run() }
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    guard open.enter(limit: Self.maximumConnections) else {
                        connection.channel.close(promise: nil)
                        continue
                    }
                    group.addTask {
                        defer { open.leave() }
                        await self.serve(connection, gate: gate, link: link)
                    }
                }
            }
        }
    }

    /// One connection: one request, answered, then closed (server-sent events stay open while
    /// the page listens). The gate decides on the request's head, before any body is read; a
    /// request that is not whole within `requestTimeout` is closed.
    func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, gate: ConsoleGate, link: DaemonLink) async {
        let arrived = Flag()
        let channel = connection.channel
        let watchdog = Task {
            try? await Task.sleep(for: Self.requestTimeout)
            if !arrived.isSet { channel.close(promise: nil) }
        }
        defer { watchdog.cancel() }
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var route: ConsoleGate.Route?
            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let h):
                    head = h
                    switch gate.decide(method: h.method.rawValue, target: h.uri, headers: h.headers.map { ($0.name, $0.value) }) {
                    case let .refuse(status, reason):
                        arrived.set()
                        refusals.note(status: status, path: ConsoleGate.split(h.uri).path, reason: reason, logger: logger)
                        try await Self.respond(outbound, status: status, json: ["error": .string(reason)])
                        return
                    case .allow(let r):
                        route = r
                    }
                case .body(var chunk):
                    guard body.readableBytes + chunk.readableBytes <= Self.maximumBody else {
                        arrived.set()
                        try await Self.respond(outbound, status: 413, json: ["error": .string("request too large")])
                        return
                    }
                    body.writeBuffer(&chunk)
                case .end:
                    arrived.set()
                    guard let head, let route else { return }
                    try await handle(route, target: head.uri, body: Array(body.readableBytesView), outbound: outbound, link: link)
                    return
                }
            }
        }
    }

    func handle(_ route: ConsoleGate.Route, target: String, body: [UInt8], outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
                link: DaemonLink) async throws {
        switch route {
        case .page:
            try await Self.respond(outbound, status: 200, contentType: "text/html; charset=utf-8", body: Array(ConsolePage.html.utf8))
        case .eventsWorker:
            try await Self.respond(outbound, status: 200, contentType: "text/javascript; charset=utf-8", body: Array(ConsolePage.eventsWorker.utf8))
        case .state:
            var state = await ConsoleState.read(link: link)
            state["console"] = .object(["qc_phantom": qcPhantomPath.map(JSONValue.string) ?? .null,
                                        "streams": .number(Double(await link.listenerCount))])
            try await Self.respond(outbound, status: 200, json: state)
        case .call:
            guard let request = try? JSONDecoder().decode(JSONValue.self, from: Data(body)),
                  let method = request["method"]?.stringValue else {
                try await Self.respond(outbound, status: 400, json: ["error": .string("expected {\"method\": ..., \"params\": {...}}")])
                return
            }
            guard ControlMethod(rawValue: method) != nil else {
                try await Self.respond(outbound, status: 400, json: ["error": .string("dexad has no method \(method)")])
                return
            }
            if let extra = request.objectKeys?.subtracting(["method", "params"]), !extra.isEmpty {
                try await Self.respond(outbound, status: 400, json: ["error": .string("unknown field(s) \(extra.sorted().joined(separator: ", "))")])
                return
            }
            // The link's own subscription is the console's; a second one would send every
            // event twice.
            if method == ControlMethod.eventsSubscribe.rawValue {
                try await Self.respond(outbound, status: 400, json: ["error": .string("the console subscribes to events itself: listen on /api/events")])
                return
            }
            // A step or a scan takes minutes: answered at once (202) and its result sent to the
            // pages as `call.result`, so that no browser connection is held for the whole step
            // (a browser has six per server, and Stop needs one).
            if Self.longMethods.contains(method) {
                let id = await link.startCall(method, request["params"])
                try await Self.respond(outbound, status: 202, json: ["accepted": .bool(true), "call_id": .number(Double(id))])
                return
            }
            do {
                let result = try await withTimeout(.seconds(30)) { try await link.call(method, request["params"]) }
                try await Self.respond(outbound, status: 200, json: ["result": result])
            } catch let e as RPCError {
                try await Self.respond(outbound, status: 200, json: ["error": .object(["code": .number(Double(e.code)), "message": .string(e.message)])])
            } catch {
                try await Self.respond(outbound, status: 503, json: ["error": .string("dexad: \(error)")])
            }
        case .report, .siteImage:
            let query = ConsoleGate.split(target).query
            switch await Documents.make(route, query: query, link: link) {
            case .success(let (contentType, bytes)):
                try await Self.respond(outbound, status: 200, contentType: contentType, body: bytes)
            case .failure(let failure):
                try await Self.respond(outbound, status: failure.status, json: ["error": .string(failure.message)])
            }
        case .worklist:
            let query = ConsoleGate.split(target).query
            if let unknown = query.keys.filter({ !["token", "refresh"].contains($0) }).sorted().first {
                try await Self.respond(outbound, status: 400, json: ["error": .string("unknown parameter \(unknown) (refresh=1)")])
                return
            }
            let (status, json) = await scheduled.answer(refresh: query["refresh"] == "1")
            try await Self.respond(outbound, status: status, json: json)
        case .stop:
            let outcome = await Stop.press(socketPath: socketPath)
            try await Self.respond(outbound, status: outcome.ok ? 200 : 503, json: outcome.json)
        case .events:
            guard let (id, stream) = await link.listen() else {
                try await Self.respond(outbound, status: 429, json: ["error": .string("\(DaemonLink.maximumListeners) event streams are open already (a browser's tabs share one; a browser without shared workers opens one per page): close the others (this page still shows the state, without live events)")])
                return
            }
            var headers = Self.commonHeaders(contentType: "text/event-stream")
            headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
            try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
            defer { Task { await link.stopListening(id) } }
            // A comment every 5 s keeps the page's own timeout from closing a quiet stream, and finds a
            // page that has gone (its write fails) within 5 s, freeing its place.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(5))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(string: ": keep-alive\n\n"))))
                    }
                }
                group.addTask {
                    for await message in stream {
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(string: message))))
                    }
                }
                _ = try await group.next()
                group.cancelAll()
            }
        }
    }

    /// Methods that run for as long as a step, a scan or a calibration does.
    static let longMethods: Set<String> = [ControlMethod.examStart, .examNext, .examRepeat, .scanRun, .serviceCalibrate, .qcRun].map(\.rawValue)
        .reduce(into: Set<String>()) { $0.insert($1) }

    static func commonHeaders(contentType: String) -> HTTPHeaders {
        var h = HTTPHeaders()
        h.add(name: "Content-Type", value: contentType)
        h.add(name: "Cache-Control", value: "no-store")
        // Nothing from anywhere else; the token never leaves in a Referer; no framing.
        h.add(name: "Content-Security-Policy", value: "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
        h.add(name: "Referrer-Policy", value: "no-referrer")
        h.add(name: "X-Frame-Options", value: "DENY")
        h.add(name: "X-Content-Type-Options", value: "nosniff")
        h.add(name: "Connection", value: "close")
        return h
    }

    static func respond(_ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, status: Int, json: [String: JSONValue]) async throws {
        let data = (try? JSONEncoder().encode(JSONValue.object(json))) ?? Data("{}".utf8)
        try await respond(outbound, status: status, contentType: "application/json", body: Array(data))
    }

    static func respond(_ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, status: Int, contentType: String, body: [UInt8]) async throws {
        var headers = commonHeaders(contentType: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)))
        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
        try await outbound.write(.end(nil))
    }
}

public struct ConsoleError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension JSONValue {
    /// The keys of an object; nil for anything else.
    var objectKeys: Set<String>? {
        if case .object(let o) = self { return Set(o.keys) }
        return nil
    }
}

/// Connections being served (the listening loop counts them in, each task out).
final class ConnectionCount: Sendable {
    private let count = Mutex(0)
    func enter(limit: Int) -> Bool { count.withLock { n in guard n < limit else { return false }; n += 1; return true } }
    func leave() { count.withLock { $0 -= 1 } }
}

final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// Refusals logged at most 20 a minute (a flood of them would fill the journal); the rest
/// counted and said in the next minute's first line.
final class RefusalLog: Sendable {
    private struct State { var minute = 0; var logged = 0; var suppressed = 0 }
    private let state = Mutex(State())
    func note(status: Int, path: String, reason: String, logger: Logger) {
        let minute = Int(Date().timeIntervalSince1970 / 60)
        let (log, suppressed) = state.withLock { s -> (Bool, Int) in
            var carried = 0
            if s.minute != minute { carried = s.suppressed; s = State(minute: minute) }
            guard s.logged < 20 else { s.suppressed += 1; return (false, 0) }
            s.logged += 1
            return (true, carried)
        }
        if suppressed > 0 { logger.notice("\(suppressed) more requests were refused in the last minute") }
        if log { logger.notice("refused", metadata: ["status": "\(status)", "path": "\(path)", "reason": "\(reason)"]) }
    }
}
