import DXProtocol
import Foundation
import Synchronization

/// The byte format between the host and a `dexa-sim` process: the capture record format of
/// ICD §7 (t_us, endpoint, reserved, length, bytes), so one parser serves both and a
/// socket dump is a capture body. Host to simulator uses endpoint 0x01; the simulator
/// answers on 0x81 and 0x82.
public struct SimLinkDecoder: Sendable {
    private var buffer: [UInt8] = []
    public init() {}

    public mutating func append(_ bytes: [UInt8]) { buffer.append(contentsOf: bytes) }

    /// The next whole record; throws on a record that cannot be one (the link is then dropped).
    public mutating func next() throws(TransportError) -> CaptureRecord? {
        guard buffer.count >= CaptureRecord.headerSize else { return nil }
        var r = WireReader(buffer)
        guard let t = try? r.u64(), let ep = try? r.u8(), (try? r.u8()) != nil, let len = try? r.u32() else { return nil }
        guard let endpoint = Endpoint(rawValue: ep) else { throw .io("sim link: bad endpoint 0x\(String(ep, radix: 16))") }
        guard Int(len) <= CaptureFormat.maxRecordBytes else { throw .io("sim link: record of \(len) bytes") }
        let total = CaptureRecord.headerSize + Int(len)
        guard buffer.count >= total else { return nil }
        let record = CaptureRecord(tUs: t, endpoint: endpoint, bytes: Array(buffer[CaptureRecord.headerSize..<total]))
        buffer.removeFirst(total)
        return record
    }
}

/// A `DeviceTransport` to a `dexa-sim` process over its Unix socket (`--device sim:PATH`).
public final class SimLinkTransport: DeviceTransport {
    public let path: String
    public var name: String { "sim:\(path)" }
    private let current = Mutex<Connection?>(nil)

    /// One connection's socket, closed when the last user lets go of it. The reader thread
    /// once closed the descriptor while the transport still held its number; the next
    /// connection got the same number, and shutting down "the old one" on reconnect broke
    /// the new link a millisecond after every reconnect ("handshake failed … Broken pipe",
    /// issue 19). Now nothing closes a descriptor that a reader, a writer or this transport
    /// may still use: ending a connection is `shutdown`, closing is the last release.
    final class Connection: Sendable {
        let socket: UnixSocket
        init(_ socket: UnixSocket) { self.socket = socket }
        deinit { socket.close() }
    }

    public init(path: String) { self.path = path }

    public func open() async throws -> AsyncThrowingStream<TransportChunk, any Error> {
        let connection = Connection(try UnixSocket.connect(path: path))
        let s = connection.socket
        current.withLock { old in
            old?.socket.shutdown()
            old = connection
        }
        let (stream, cont) = AsyncThrowingStream<TransportChunk, any Error>.makeStream()
        // One blocking reader thread per connection; it ends when the socket is shut down.
        let thread = Thread {
            var decoder = SimLinkDecoder()
            do {
                while true {
                    let bytes = try s.read()
                    if bytes.isEmpty { throw TransportError.disconnected("simulator closed the link") }
                    decoder.append(bytes)
                    while let r = try decoder.next() {
                        guard r.endpoint != .commandOut else { continue }
                        cont.yield(TransportChunk(endpoint: r.endpoint, bytes: r.bytes))
                    }
                }
            } catch {
                cont.finish(throwing: error)
            }
            self.current.withLock { c in if c === connection { c = nil } }
            withExtendedLifetime(connection) {}
        }
        thread.name = "dexa-simlink"
        thread.start()
        return stream
    }

    public func send(_ bytes: [UInt8]) async throws {
        guard let connection = current.withLock({ $0 }) else { throw TransportError.notOpen }
        try connection.socket.writeAll(CaptureRecord(tUs: 0, endpoint: .commandOut, bytes: bytes).encoded)
    }

    public func close() async {
        current.withLock { c in
            c?.socket.shutdown()
            c = nil
        }
    }
}
