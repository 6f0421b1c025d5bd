import DXControl
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The technologist's console: a web page on 127.0.0.1 that runs the day through dexad's
/// control socket (docs/console-ui.md). It holds no state of its own but the session token:
/// every figure on the page is the daemon's, asked for again every second and on every event.
public struct ConsoleServer: Sendable {
    public let socketPath: String
    public let token: String
    let logger: Logger

    public init(socketPath: String, token: String = ConsoleGate.newToken(), logger: Logger = Logger(label: "dexa-console")) {
        self.socketPath = socketPath
        self.token = token
        self.logger = logger
    }

    /// The largest request body read (a checklist or an exam's creation is a few hundred bytes).
    static let maximumBody = 1 << 20

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
        ready(bound)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await link.run() }
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask { await self.serve(connection, gate: gate, link: link) }
                }
            }
        }
    }

    /// One connection: one request, answered, then closed (server-sent events stay open while
    /// the page listens).
    func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, gate: ConsoleGate, link: DaemonLink) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let h): head = h
                case .body(var chunk):
                    guard body.readableBytes + chunk.readableBytes <= Self.maximumBody else {
                        try await Self.respond(outbound, status: 413, json: ["error": .string("request too large")])
                        return
                    }
                    body.writeBuffer(&chunk)
                case .end:
                    guard let head else { return }
                    let decision = gate.decide(method: head.method.rawValue, target: head.uri, headers: head.headers.map { ($0.name, $0.value) })
                    switch decision {
                    case let .refuse(status, reason):
                        logger.notice("refused", metadata: ["status": "\(status)", "path": "\(ConsoleGate.split(head.uri).path)", "reason": "\(reason)"])
                        try await Self.respond(outbound, status: status, json: ["error": .string(reason)])
                    case .allow(let route):
                        try await handle(route, target: head.uri, body: Array(body.readableBytesView), outbound: outbound, link: link)
                    }
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
        case .state:
            let state = await ConsoleState.read(link: link)
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
            do {
                let result = try await link.call(method, request["params"])
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
        case .stop:
            let outcome = await Stop.press(socketPath: socketPath)
            try await Self.respond(outbound, status: outcome.ok ? 200 : 503, json: outcome.json)
        case .events:
            var headers = Self.commonHeaders(contentType: "text/event-stream")
            headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
            try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
            let (id, stream) = await link.listen()
            defer { Task { await link.stopListening(id) } }
            // A comment every 15 s keeps proxies and the page's own timeout from closing a quiet
            // stream; a write that fails means the page has gone.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(15))
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
