import NIOCore
import NIOPosix
import Synchronization

/// Why the client could not talk to the daemon.
public enum ControlClientError: Error, Sendable, CustomStringConvertible {
    case unreachable(path: String, reason: String)
    case connectionClosed
    case badReply(String)

    public var description: String {
        switch self {
        case let .unreachable(path, reason): "cannot reach dexad at \(path): \(reason) (is the daemon running? see 'systemctl status dexad')"
        case .connectionClosed: "dexad closed the connection"
        case .badReply(let s): "dexad sent an unreadable reply: \(s)"
        }
    }
}

/// A connection to the daemon's control socket (used by `dexa` and the integration tests).
public final class ControlConnection: Sendable {
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let router = Router()
    private let ids = Mutex(0)
    /// Notifications from the daemon (progress, events), in order.
    public let notifications: AsyncStream<(method: String, params: JSONValue?)>
    fileprivate let notificationSink: AsyncStream<(method: String, params: JSONValue?)>.Continuation

    fileprivate init(outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.outbound = outbound
        (notifications, notificationSink) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(4096))
    }

    /// Calls `method` and waits for its result; a JSON-RPC error is thrown as `RPCError`.
    public func call(_ method: String, _ params: JSONValue? = nil) async throws -> JSONValue {
        let id = ids.withLock { $0 += 1; return $0 }
        let request = RPCRequest(id: .number(id), method: method, params: params)
        return try await withCheckedThrowingContinuation { c in
            Task {
                guard await router.register(id, c) else { return }
                do { try await outbound.write(ByteBuffer(bytes: request.encoded())) } catch {
                    // The daemon may have closed the connection with a reason still on its way
                    // (a refused connection): the read side's end says which.
                    await router.writeFailed(id)
                }
            }
        }
    }

    /// Calls a method with its typed parameters and reads its typed result.
    public func call<P, R>(_ rpc: RPC<P, R>, _ params: P) async throws -> R {
        let value = try await call(rpc.method.rawValue, try JSONValue(encoding: params))
        do { return try value.decode(R.self) } catch {
            throw ControlClientError.badReply("\(rpc.method.rawValue) returned what this dexa cannot read: \(error)")
        }
    }

    /// Calls a method that takes no parameters.
    public func call<R>(_ rpc: RPC<NoParams, R>) async throws -> R { try await call(rpc, NoParams()) }

    /// Sends raw bytes (tests use this to send garbage).
    public func sendRaw(_ bytes: [UInt8]) async throws { try await outbound.write(ByteBuffer(bytes: bytes)) }

    fileprivate func deliver(_ line: [UInt8]) async {
        guard let message = RPCMessage.parse(line) else { return }
        switch message {
        case let .notification(method, params):
            notificationSink.yield((method, params))
        case let .response(id, result):
            guard case .number(let n)? = id else {
                // An error for no request (the daemon refused the connection, or could not
                // read a line): every call waiting on this connection fails with it.
                if case .failure(let e) = result { await router.failAll(e) }
                return
            }
            await router.resolve(n, result.mapError { $0 as any Error })
        }
    }

    fileprivate func closed() async {
        notificationSink.finish()
        await router.closeAll()
    }

    actor Router {
        private var waiting: [Int: CheckedContinuation<JSONValue, any Error>] = [:]
        private var isClosed = false
        /// An error the daemon sent for no request (it refused the connection): every call on
        /// this connection, waiting or still to come, fails with it.
        private var connectionError: RPCError?

        func register(_ id: Int, _ c: CheckedContinuation<JSONValue, any Error>) -> Bool {
            if let connectionError { c.resume(throwing: connectionError); return false }
            if isClosed { c.resume(throwing: ControlClientError.connectionClosed); return false }
            waiting[id] = c
            return true
        }
        func resolve(_ id: Int, _ r: Result<JSONValue, any Error>) { waiting.removeValue(forKey: id)?.resume(with: r) }
        /// A request that could not be written: it fails when the connection's end is known
        /// (with the daemon's reason if it sent one), or after a second if that never comes.
        func writeFailed(_ id: Int) {
            if isClosed {
                resolve(id, .failure(connectionError ?? ControlClientError.connectionClosed))
                return
            }
            Task {
                try? await Task.sleep(for: .seconds(1))
                self.resolve(id, .failure(self.connectionError ?? ControlClientError.connectionClosed))
            }
        }

        func failAll(_ error: RPCError) {
            connectionError = error
            for (_, c) in waiting { c.resume(throwing: error) }
            waiting = [:]
        }
        func closeAll() {
            isClosed = true
            for (_, c) in waiting { c.resume(throwing: connectionError ?? ControlClientError.connectionClosed) }
            waiting = [:]
        }
    }

    /// Connects, runs `body`, and closes.
    public static func with<R: Sendable>(socketPath path: String, _ body: @escaping @Sendable (ControlConnection) async throws -> R) async throws -> R {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: path) { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder(maxLength: 64 << 20)))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch)
                    }
                }
        } catch {
            throw ControlClientError.unreachable(path: path, reason: reason(error))
        }
        return try await channel.executeThenClose { inbound, outbound in
            let connection = ControlConnection(outbound: outbound)
            return try await withThrowingTaskGroup(of: R?.self) { group in
                group.addTask {
                    do { for try await line in inbound { await connection.deliver(Array(line.readableBytesView)) } } catch {}
                    await connection.closed()
                    return nil
                }
                group.addTask { try await body(connection) }
                while let next = try await group.next() {
                    if let r = next {
                        group.cancelAll()
                        return r
                    }
                }
                throw ControlClientError.connectionClosed
            }
        }
    }

    private static func reason(_ error: any Error) -> String {
        let s = String(describing: error)
        if s.contains("No such file") || s.contains("errno: 2") { return "no such socket" }
        if s.contains("Connection refused") || s.contains("errno: 111") { return "connection refused" }
        if s.contains("Permission denied") || s.contains("errno: 13") { return "permission denied" }
        return s
    }
}
