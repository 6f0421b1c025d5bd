import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What a request handler can do besides answering: send notifications on its connection,
/// and keep a stream going (an `events.subscribe`) for as long as the client stays.
public struct ControlContext: Sendable {
    public let connectionID: Int
    /// The caller, from the kernel; nil where the platform cannot say.
    public let peer: PeerCredentials?
    public let role: Role
    let sendLine: @Sendable ([UInt8]) -> Void
    let addStream: @Sendable (@escaping @Sendable () async -> Void) -> Void
    let unsent: @Sendable () -> Int

    /// Lines queued for this connection and not yet written to it: a client that does not read
    /// lets them pile up (up to 8192, then new lines are lost). A stream of notifications for
    /// display (the exams' images and progress to a subscriber) sends nothing while this is
    /// high, so that such a client costs neither memory nor its own calls' answers.
    public var unsentLines: Int { unsent() }

    public func notify(_ method: String, _ params: JSONValue) { sendLine(RPCLine.notification(method, params)) }

    /// Sends a typed notification (`ControlNotification`: one type each).
    public func notify(_ notification: ControlNotification, _ params: some Encodable) {
        guard let value = try? JSONValue(encoding: params) else { return }
        notify(notification.rawValue, value)
    }

    /// Runs `body` until the client goes away (it is cancelled then).
    public func keepStreaming(_ body: @escaping @Sendable () async -> Void) { addStream(body) }
}

/// The daemon's side: one method call at a time per task.
public protocol ControlHandler: Sendable {
    func handle(_ request: RPCRequest, context: ControlContext) async throws -> JSONValue
}

/// JSON-RPC 2.0 over a Unix stream socket, one JSON object per line (docs/control-protocol.md).
/// Each connection is served by its own task; a bad line gets an error on that
/// connection alone; a client that goes away has its requests cancelled.
public final class ControlServer: Sendable {
    /// Where the server listens.
    public enum Listener: Sendable, CustomStringConvertible {
        /// Bind this path (a stale socket file left by a crash is replaced).
        case path(String)
        /// A listening socket inherited from systemd (socket activation).
        case inherited(Int32)

        public var description: String {
            switch self {
            case .path(let p): p
            case .inherited(let fd): "inherited fd \(fd)"
            }
        }
    }

    public let listener: Listener
    private let onListening: @Sendable () -> Void
    private let admit: @Sendable (PeerCredentials?) -> Admission
    private let handler: any ControlHandler
    private let logger: Logger
    private let maxInFlight: Int
    private let connectionCounter = Mutex(0)

    /// - Parameters:
    ///   - admit: decides on each connection from its peer's credentials, before reading.
    ///   - onListening: called once the socket accepts connections.
    public init(listener: Listener, handler: any ControlHandler, logger: Logger = Logger(label: "dexa.control"), maxInFlight: Int = 16,
                admit: @escaping @Sendable (PeerCredentials?) -> Admission, onListening: @escaping @Sendable () -> Void) {
        self.listener = listener
        self.admit = admit
        self.onListening = onListening
        self.handler = handler
        self.logger = logger
        self.maxInFlight = maxInFlight
    }

    /// Binds the socket and serves until the calling task is cancelled.
    public func run() async throws {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 128)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
        let initializer: @Sendable (Channel) -> EventLoopFuture<Connection> = { channel in
            Self.peerCredentials(of: channel).flatMapThrowing { peer in
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder(maxLength: RPCLine.maxLength)))
                return Connection(channel: try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel), peer: peer)
            }
        }
        let server: NIOAsyncChannel<Connection, Never>
        switch listener {
        case .path(let path):
            server = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
        case .inherited(let fd):
            server = try await bootstrap.bind(fd, childChannelInitializer: initializer)
        }
        logger.info("control socket listening", metadata: ["socket": "\(listener)"])
        onListening()
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    let id = connectionCounter.withLock { $0 += 1; return $0 }
                    group.addTask { await self.serve(connection.channel, peer: connection.peer, id: id) }
                }
            }
        }
    }

    struct Connection: Sendable {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        let peer: PeerCredentials?
    }

    /// SO_PEERCRED of a Unix-socket channel; nil where it cannot be had.
    static func peerCredentials(of channel: Channel) -> EventLoopFuture<PeerCredentials?> {
        #if os(Linux)
        guard let provider = channel as? any SocketOptionProvider else { return channel.eventLoop.makeSucceededFuture(nil) }
        let future: EventLoopFuture<KernelUCred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(17 /* SO_PEERCRED */))
        return future.map { c -> PeerCredentials? in PeerCredentials(pid: c.pid, uid: c.uid, gid: c.gid) }
            .recover { _ -> PeerCredentials? in nil }
        #else
        return channel.eventLoop.makeSucceededFuture(nil)
        #endif
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, peer: PeerCredentials?, id: Int) async {
        let role: Role
        switch admit(peer) {
        case .admit(let r): role = r
        case .refuse(let why):
            // Refused before anything is read: one error line, then the connection closes.
            try? await connection.executeThenClose { _, outbound in
                try await outbound.write(ByteBuffer(bytes: RPCLine.error(id: nil, RPCError(code: RPCError.forbiddenCode, message: why))))
            }
            return
        }
        do {
            try await connection.executeThenClose { inbound, outbound in
                let requests = TaskSet()
                let streams = TaskSet()
                let (writes, writer) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingOldest(8192))
                let queued = Atomic<Int>(0)
                // The connection closed, not half-closed: the client is gone (it closed its
                // socket, or its process ended). Linux reports that as a hang-up at once, and NIO
                // closes the channel then; what the client asked for stops now, not at the next
                // write to it, which during a scan step may be a while (a half-close, as `socat`
                // sends after its request, keeps the channel open and the requests running).
                connection.channel.closeFuture.whenComplete { _ in
                    requests.cancelAll()
                    streams.cancelAll()
                }
                let context = ControlContext(
                    connectionID: id,
                    peer: peer,
                    role: role,
                    sendLine: { if case .enqueued = writer.yield($0) { queued.add(1, ordering: .relaxed) } },
                    addStream: { body in streams.add(body) },
                    unsent: { queued.load(ordering: .relaxed) })

                async let writing: Void = {
                    for await line in writes {
                        queued.subtract(1, ordering: .relaxed)
                        do { try await outbound.write(ByteBuffer(bytes: line)) } catch {
                            // The client is gone: whatever it asked for stops (a scan aborts).
                            requests.cancelAll()
                            streams.cancelAll()
                            break
                        }
                    }
                }()

                do {
                    for try await line in inbound {
                        let bytes = Array(line.readableBytesView)
                        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                        switch RPCRequest.parse(bytes) {
                        case .failure(let f):
                            writer.yield(RPCLine.error(id: f.id, f.error))
                        case .success(let request):
                            if requests.count >= maxInFlight {
                                writer.yield(RPCLine.error(id: request.id, RPCError(code: RPCError.busyCode, message: "too many requests in flight on this connection (\(maxInFlight))")))
                                continue
                            }
                            let handler = self.handler
                            requests.add {
                                let reply: [UInt8]
                                do {
                                    let result = try await handler.handle(request, context: context)
                                    reply = RPCLine.response(id: request.id, result: result)
                                } catch let e as RPCError {
                                    reply = RPCLine.error(id: request.id, e)
                                } catch {
                                    reply = RPCLine.error(id: request.id, RPCError(code: RPCError.internalErrorCode, message: String(describing: error)))
                                }
                                if request.id != nil { writer.yield(reply) }
                            }
                        }
                    }
                    // End of input. A half-close: finish what was asked (a full close has cancelled it).
                    streams.cancelAll()
                    await requests.waitAll()
                } catch is LineDecoder.LineTooLong {
                    writer.yield(RPCLine.error(id: nil, .invalidRequest("line longer than \(RPCLine.maxLength) bytes; closing the connection")))
                    requests.cancelAll()
                    streams.cancelAll()
                } catch {
                    requests.cancelAll()
                    streams.cancelAll()
                }
                await streams.waitAll()
                await requests.waitAll()
                writer.finish()
                await writing
            }
        } catch {
            logger.debug("control connection ended", metadata: ["connection": "\(id)", "error": "\(error)"])
        }
    }
}

/// Tasks of one connection, so they can be cancelled or awaited together.
///
/// Once cancelled (the client hung up, or the connection failed) the set stays so: a task
/// added later runs cancelled, and every task in it counts against the connection's limit,
/// so that requests still buffered from a client that is gone start at most that many.
/// Cancelling runs the tasks' cancellation handlers on the caller's thread (NIO's event loop
/// for a hang-up): they must not block.
final class TaskSet: Sendable {
    private struct State {
        var tasks: [Int: Task<Void, Never>] = [:]
        var counter = 0
        var cancelled = false
    }
    private let state = Mutex(State())

    var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Tasks that count against the connection's limit: the running ones not cancelled, or,
    /// once the set is cancelled, all it still holds.
    var count: Int { state.withLock { s in s.cancelled ? s.tasks.count : s.tasks.values.filter { !$0.isCancelled }.count } }

    /// Starts `body` as a task of the set. Either the task finds the set cancelled when it
    /// starts (and cancels itself before the body runs) or `cancelAll` finds it in the set.
    func add(_ body: @escaping @Sendable () async -> Void) {
        let (key, task) = state.withLock { s -> (Int, Task<Void, Never>) in
            s.counter += 1
            let task = Task {
                if self.isCancelled { withUnsafeCurrentTask { $0?.cancel() } }
                await body()
            }
            s.tasks[s.counter] = task
            return (s.counter, task)
        }
        Task {
            await task.value
            _ = self.state.withLock { $0.tasks.removeValue(forKey: key) }
        }
    }

    /// Cancels every task, and every task added from now on.
    func cancelAll() {
        let tasks = state.withLock { s in
            s.cancelled = true
            return Array(s.tasks.values)
        }
        for t in tasks { t.cancel() }
    }

    func waitAll() async {
        for t in state.withLock({ Array($0.tasks.values) }) { await t.value }
    }
}

/// Linux's `struct ucred` (pid, uid, gid), which Glibc's Swift overlay does not export.
struct KernelUCred: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
