import DXProtocol
import Synchronization

/// Two connected ends in one process: the host's `DeviceTransport` and the device's side,
/// which a simulator drives. Used by the embedded simulator and by tests.
public final class InMemoryLink: Sendable {
    public let host: HostEnd
    public let device: DeviceEnd

    public init(name: String = "sim:embedded") {
        let (toDevice, toDeviceCont) = AsyncStream<[UInt8]>.makeStream()
        let state = SharedState()
        host = HostEnd(name: name, state: state, toDevice: toDeviceCont)
        device = DeviceEnd(state: state, fromHost: toDevice, toDevice: toDeviceCont)
    }

    /// The link's state, shared by both ends (a `Mutex` cannot be copied, so it lives here).
    final class SharedState: Sendable {
        let mutex = Mutex(LinkState())
        func withLock<R>(_ body: (inout LinkState) -> R) -> R { mutex.withLock { body(&$0) } }
    }

    struct LinkState: Sendable {
        var hostContinuation: AsyncThrowingStream<TransportChunk, any Error>.Continuation?
        var connected = true
        var hostOpen = false
        /// What the device sent before the host opened (a real device would hold it in its FIFO).
        var early: [TransportChunk] = []
    }

    /// The host's side of the link.
    public final class HostEnd: DeviceTransport {
        public let name: String
        private let state: SharedState
        private let toDevice: AsyncStream<[UInt8]>.Continuation

        init(name: String, state: SharedState, toDevice: AsyncStream<[UInt8]>.Continuation) {
            self.name = name
            self.state = state
            self.toDevice = toDevice
        }

        public func open() async throws -> AsyncThrowingStream<TransportChunk, any Error> {
            let (stream, cont) = AsyncThrowingStream<TransportChunk, any Error>.makeStream()
            let ok = state.withLock { s -> Bool in
                guard s.connected else { return false }
                s.hostContinuation?.finish()
                s.hostContinuation = cont
                s.hostOpen = true
                for c in s.early { cont.yield(c) }
                s.early = []
                return true
            }
            guard ok else { throw TransportError.disconnected("device is not attached") }
            return stream
        }

        public func send(_ bytes: [UInt8]) async throws {
            let connected = state.withLock { $0.connected && $0.hostOpen }
            guard connected else { throw TransportError.disconnected("device is not attached") }
            toDevice.yield(bytes)
        }

        public func close() async {
            state.withLock { s in
                s.hostOpen = false
                s.hostContinuation?.finish()
                s.hostContinuation = nil
            }
        }
    }

    /// The device's side: what the simulator reads from and writes to.
    public final class DeviceEnd: Sendable {
        private let state: SharedState
        /// Bytes the host wrote to EP 0x01. One consumer (the simulated firmware).
        public let fromHost: AsyncStream<[UInt8]>
        private let toDevice: AsyncStream<[UInt8]>.Continuation

        init(state: SharedState, fromHost: AsyncStream<[UInt8]>, toDevice: AsyncStream<[UInt8]>.Continuation) {
            self.state = state
            self.fromHost = fromHost
            self.toDevice = toDevice
        }

        /// Sends bytes on an IN endpoint. Returns false when no host is listening (dropped).
        @discardableResult
        public func emit(_ endpoint: Endpoint, _ bytes: [UInt8]) -> Bool {
            state.withLock { s in
                guard s.connected else { return false }
                guard let c = s.hostContinuation else {
                    if s.early.count < 1024 { s.early.append(TransportChunk(endpoint: endpoint, bytes: bytes)) }
                    return false
                }
                c.yield(TransportChunk(endpoint: endpoint, bytes: bytes))
                return true
            }
        }

        /// Unplug: the host's stream ends with `disconnected`, sends fail.
        public func disconnect(reason: String = "unplugged") {
            state.withLock { s in
                s.connected = false
                s.hostContinuation?.finish(throwing: TransportError.disconnected(reason))
                s.hostContinuation = nil
                s.hostOpen = false
            }
        }

        /// Plug back in: the host may open again.
        public func reconnect() {
            state.withLock { s in
                s.connected = true
                s.early = []
            }
        }

        /// Ends the host-to-device stream (the link is being torn down for good).
        public func shutdown() {
            disconnect(reason: "link shut down")
            toDevice.finish()
        }
    }
}
