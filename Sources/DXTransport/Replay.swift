import DXProtocol
import Foundation

/// A capture played back as a device link (STYLE.md, lesson 2): what the device sent (0x81
/// responses and events, 0x82 data) comes out of `open()` in the recorded order, paced by the
/// records' timestamps on `clock` divided by `speed` (or as fast as it can be read with
/// `speed` = .infinity). Whatever reads a live link reads a replay the same way. A replay
/// cannot be commanded: `send` throws.
public final class ReplayTransport: DeviceTransport {
    public let name: String
    private let records: [CaptureRecord]
    private let speed: Double
    private let clock: any Clock<Duration>

    public init(contents: CaptureFormat.Contents, name: String, speed: Double = .infinity, clock: any Clock<Duration> = ContinuousClock()) {
        self.name = "replay:\(name)"
        records = contents.records.filter { $0.endpoint != .commandOut }
        self.speed = speed
        self.clock = clock
    }

    public convenience init(path: String, speed: Double = .infinity) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw TransportError.unreachable("cannot read \(path)") }
        let contents: CaptureFormat.Contents
        do { contents = try CaptureFormat.parse(Array(data)) } catch { throw TransportError.io("\(path): \(error.description)") }
        self.init(contents: contents, name: path, speed: speed)
    }

    public func open() async throws -> AsyncThrowingStream<TransportChunk, any Error> {
        let (stream, continuation) = AsyncThrowingStream<TransportChunk, any Error>.makeStream(bufferingPolicy: .unbounded)
        let records = self.records, speed = self.speed, clock = self.clock
        let player = Task {
            let first = records.first?.tUs ?? 0
            var played: UInt64 = first
            for record in records {
                if Task.isCancelled { break }
                if speed.isFinite, speed > 0, record.tUs > played {
                    let wait = Double(record.tUs - played) / speed
                    try? await clock.sleep(for: .microseconds(Int64(wait)))
                    played = record.tUs
                }
                continuation.yield(TransportChunk(endpoint: record.endpoint, bytes: record.bytes))
            }
            // The end of the recording is the device leaving.
            continuation.finish(throwing: TransportError.disconnected("end of the capture"))
        }
        continuation.onTermination = { _ in player.cancel() }
        return stream
    }

    public func send(_ bytes: [UInt8]) async throws {
        throw TransportError.io("a replayed capture cannot be commanded")
    }

    public func close() async {}
}
