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
    private let socket = Mutex<UnixSocket?>(nil)

    public init(path: String) { self.path = path }

    public func open() async throws -> AsyncThrowingStream<TransportChunk, any Error> {
        let s = try UnixSocket.connect(path: path)
        socket.withLock { old in
            old?.shutdown()
            old = s
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
            s.close()
        }
        thread.name = "dexa-simlink"
        thread.start()
        return stream
    }

    public func send(_ bytes: [UInt8]) async throws {
        guard let s = socket.withLock({ $0 }) else { throw TransportError.notOpen }
        try s.writeAll(CaptureRecord(tUs: 0, endpoint: .commandOut, bytes: bytes).encoded)
    }

    public func close() async {
        socket.withLock { s in
            s?.shutdown()
            s = nil
        }
    }
}
