import DXProtocol
import Foundation

/// A capture played back as a device link (STYLE.md, lesson 2): what the device sent (0x81
/// responses and events, 0x82 data) comes out of `open()` in the recorded order, paced by the
/// records' timestamps on `clock` divided by `speed` (or as fast as it can be read with
/// `speed` = .infinity). Whatever reads a live link reads a replay the same way. A replay
/// cannot be commanded: `send` throws.
public final class ReplayTransport: DeviceTransport {
    /// Where the records come from: held in memory, or read from the file as they are played
    /// (`init(path:)`: a capture of any length, never held whole).
    private enum Source: Sendable {
        case records([CaptureRecord])
        case file(path: String, recordsOffset: Int)
    }

    public let name: String
    private let source: Source
    private let speed: Double
    private let clock: any Clock<Duration>

    public init(contents: CaptureFormat.Contents, name: String, speed: Double = .infinity, clock: any Clock<Duration> = ContinuousClock()) {
        self.name = "replay:\(name)"
        chunkBytes = 1 << 20
        source = .records(contents.records.filter { $0.endpoint != .commandOut })
        self.speed = speed
        self.clock = clock
    }

    /// A capture file played as it is read: its preamble is checked now, its records are read
    /// a chunk at a time while they are played (a bad record ends the stream with its error).
    public init(path: String, speed: Double = .infinity, clock: any Clock<Duration> = ContinuousClock(), chunkBytes: Int = 1 << 20) throws {
        guard let file = FileHandle(forReadingAtPath: path) else { throw TransportError.unreachable("cannot read \(path)") }
        defer { try? file.close() }
        do {
            let first = Array((try file.read(upToCount: CaptureFormat.fixedPreambleBytes)) ?? Data())
            let length = try CaptureFormat.headerLength(first)
            _ = try CaptureFormat.header(first + Array((try file.read(upToCount: length)) ?? Data()))
            source = .file(path: path, recordsOffset: CaptureFormat.fixedPreambleBytes + length)
        } catch let error as CaptureError {
            throw TransportError.io("\(path): \(error.description)")
        } catch {
            throw TransportError.io("\(path): \(error)")
        }
        name = "replay:\(path)"
        self.chunkBytes = chunkBytes
        self.speed = speed
        self.clock = clock
    }

    /// Bytes read from the file at a time (tests make it small to cross many chunks).
    public let chunkBytes: Int

    /// The records in order, the host's commands left out, read on demand.
    private actor Feed {
        private var memory: [CaptureRecord]
        private var position = 0
        private var file: FileHandle?
        private var reader: CaptureRecordReader
        private let path: String
        private let chunkBytes: Int

        init(_ source: Source, chunkBytes: Int) throws {
            self.chunkBytes = max(1, chunkBytes)
            switch source {
            case .records(let r):
                memory = r; reader = CaptureRecordReader(offset: 0); path = ""
            case let .file(path, offset):
                memory = []; reader = CaptureRecordReader(offset: offset); self.path = path
                guard let f = FileHandle(forReadingAtPath: path) else { throw TransportError.unreachable("cannot read \(path)") }
                try f.seek(toOffset: UInt64(offset))
                file = f
            }
        }

        func next() throws -> CaptureRecord? {
            while true {
                guard let file else {
                    guard position < memory.count else { return nil }
                    defer { position += 1 }
                    return memory[position]
                }
                do {
                    if let r = try reader.next() {
                        if r.endpoint == .commandOut { continue }
                        return r
                    }
                } catch {
                    close()
                    throw TransportError.io("\(path): \(error.description)")
                }
                let chunk = try file.read(upToCount: chunkBytes) ?? Data()
                if chunk.isEmpty {
                    close()
                    return nil
                }
                reader.append(chunk)
            }
        }

        func close() {
            try? file?.close()
            file = nil
        }
    }

    public func open() async throws -> AsyncThrowingStream<TransportChunk, any Error> {
        let feed = try Feed(source, chunkBytes: chunkBytes)
        let speed = self.speed, clock = self.clock
        guard speed.isFinite, speed > 0 else {
            // As fast as it can be read: pulled, not pushed, so a record is read when the reader
            // wants the next one and the replay holds one chunk of the file, not the file.
            return AsyncThrowingStream(unfolding: {
                guard let record = try await feed.next() else {
                    // The end of the recording is the device leaving.
                    throw TransportError.disconnected("end of the capture")
                }
                return TransportChunk(endpoint: record.endpoint, bytes: record.bytes)
            })
        }
        // Paced: a player of its own keeps the recording's timing whatever the reader does with
        // each record (what it holds is what the reader has not yet taken).
        let (stream, continuation) = AsyncThrowingStream<TransportChunk, any Error>.makeStream(bufferingPolicy: .unbounded)
        let player = Task {
            var played: UInt64?
            do {
                while let record = try await feed.next() {
                    if Task.isCancelled { break }
                    if let last = played, record.tUs > last {
                        try? await clock.sleep(for: .microseconds(Int64(Double(record.tUs - last) / speed)))
                    }
                    played = max(played ?? record.tUs, record.tUs)
                    continuation.yield(TransportChunk(endpoint: record.endpoint, bytes: record.bytes))
                }
                continuation.finish(throwing: TransportError.disconnected("end of the capture"))
            } catch {
                continuation.finish(throwing: error)
            }
            await feed.close()
        }
        continuation.onTermination = { _ in player.cancel() }
        return stream
    }

    public func send(_ bytes: [UInt8]) async throws {
        throw TransportError.io("a replayed capture cannot be commanded")
    }

    public func close() async {}
}
