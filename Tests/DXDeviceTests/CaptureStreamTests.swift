import DXDecomposition
import DXProtocol
import DXSimulator
import DXTestSupport
import DXTransport
import Foundation
import Testing

/// A capture read as it goes (`CaptureFile`, `ReplayTransport(path:)`) reads what a capture read
/// whole reads, however the file is cut into chunks and wherever it ends (issue 18).
@Suite("Captures read as they go")
struct CaptureStreamTests {
    /// A capture of dark, air and a QC scan, with responses between, as the daemon records one;
    /// data frames cut across records of odd sizes, as a USB link delivers them.
    static func capture() throws -> (header: CaptureHeader, bytes: [UInt8]) {
        let header = CaptureHeader(device: SimulatorConfiguration.standardInfo,
                                   scans: [CaptureScan(scanID: 1, role: .dark), CaptureScan(scanID: 2, role: .air), CaptureScan(scanID: 3, role: .qc)])
        var bytes = try CaptureFormat.preamble(header)
        var seq: UInt32 = 1, t: UInt64 = 0
        var rng = SplitMix64(seed: 9)
        func record(_ endpoint: Endpoint, _ b: [UInt8]) {
            t += 1000
            bytes += CaptureRecord(tUs: t, endpoint: endpoint, bytes: b).encoded
        }
        for (id, count) in [(UInt32(1), 20), (2, 20), (3, 70)] {
            let config = ScanConfiguration(scanID: id, mode: .dual, xUm: 200_000, yStartUm: 500_000, lineCount: UInt32(count), lineStepUm: 1000,
                                           linePeriodUs: 10_000, tubeCurrentUA: 1000, linesPerFrame: 16)
            record(.commandOut, try Frame(kind: .command, seq: seq, payload: Command.configureScan(config).payload).encoded())
            seq += 1
            record(.responseIn, [0x44, 0x58, 2, 0])
            var stream: [UInt8] = []
            for first in stride(from: 0, to: count, by: 16) {
                let lines = (first..<min(count, first + 16)).map { i in
                    ScanLine(index: UInt32(i), yUm: 500_000 + Int32(i) * 1000, xUm: 200_000, tUs: UInt64(i) * 10_000, flags: [.xrayOn],
                             samples: (0..<288).map { _ in UInt16(truncatingIfNeeded: rng.next() % 60_000) })
                }
                stream += try Frame(kind: .data, seq: seq, payload: DataFrame(scanID: id, firstLine: UInt32(first), channels: 144, lines: lines).payload).encoded()
                seq += 1
            }
            var at = 0, size = 1_000
            while at < stream.count {
                record(.dataIn, Array(stream[at..<min(stream.count, at + size)]))
                at += size
                size = size * 7 % 9_001 + 500
            }
        }
        return (header, bytes)
    }

    static func lines(_ scans: [CapturedScan]) -> [String] {
        scans.flatMap { s in s.lines.map { "\(s.scan.scanID):\($0.index):\($0.samples)" } }
    }

    @Test func everyChunkSizeReadsWhatAWholeReadReads() throws {
        let dir = TemporaryDirectory()
        let (header, bytes) = try Self.capture()
        let whole = CaptureReader.scans(in: try CaptureFormat.parse(bytes))
        #expect(Self.lines(whole).count == 110)
        // Cut whole, and cut inside its last record (a writer killed mid-record).
        for (name, data) in [("whole", bytes), ("cut", Array(bytes.dropLast(100)))] {
            let path = dir.file("\(name).dxcap")
            try Data(data).write(to: URL(fileURLWithPath: path))
            let expected = CaptureReader.scans(in: try CaptureFormat.parse(data))
            for chunk in [1, 13, 14, 15, 777, 1 << 20] {
                var file = try CaptureFile(path: path)
                file.chunkBytes = chunk
                #expect(file.header == header)
                var configs: [UInt32: ScanConfiguration] = [:], got: [UInt32: [ScanLine]] = [:]
                try file.forEachLine(configuration: { configs[$0.scanID] = $0 }, line: { got[$0, default: []].append($1) })
                let streamed = header.scans.flatMap { s in (got[s.scanID] ?? []).map { "\(s.scanID):\($0.index):\($0.samples)" } }
                #expect(streamed == Self.lines(expected), "\(name), chunks of \(chunk)")
                #expect(header.scans.map { configs[$0.scanID] } == expected.map { $0.configuration })
                #expect(try file.forEachRecord { _ in } == (name == "cut"), "a cut tail is reported")
            }
        }
    }

    /// A record that cannot be one is the file's error, with where it is, as a whole read says.
    @Test func aBadRecordIsTheFilesError() throws {
        let dir = TemporaryDirectory()
        var (_, bytes) = try Self.capture()
        let preamble = try CaptureFormat.preamble(CaptureFormat.header(bytes)).count
        bytes[preamble + 8] = 0x07  // the first record's endpoint
        let path = dir.file("bad.dxcap")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(throws: CaptureError.badRecord(offset: preamble, "endpoint 0x7")) { try CaptureFormat.parse(bytes) }
        do {
            try CaptureFile(path: path).forEachRecord { _ in }
            Issue.record("a bad record was read")
        } catch {
            #expect(error.description.contains("capture record at byte \(preamble) is not valid: endpoint 0x7"), "\(error)")
        }
    }

    /// A replay from the file plays what a replay from memory plays, in order, the host's
    /// commands left out, and ends as the device leaving.
    @Test func aReplayFromTheFilePlaysTheRecords() async throws {
        let dir = TemporaryDirectory()
        let (_, bytes) = try Self.capture()
        let path = dir.file("replay.dxcap")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        func play(_ t: ReplayTransport) async throws -> [TransportChunk] {
            var chunks: [TransportChunk] = []
            do {
                for try await c in try await t.open() { chunks.append(c) }
                Issue.record("the replay ended without the device leaving")
            } catch TransportError.disconnected {}
            return chunks
        }
        let fromMemory = try await play(ReplayTransport(contents: try CaptureFormat.parse(bytes), name: path))
        #expect(fromMemory.count > 10)
        // In chunks of 1 MiB (the file in one) and of 333 bytes (records across many).
        for chunk in [1 << 20, 333] {
            let fromFile = try await play(try ReplayTransport(path: path, chunkBytes: chunk))
            #expect(fromFile.count == fromMemory.count, "chunks of \(chunk)")
            #expect(zip(fromFile, fromMemory).allSatisfy { $0.endpoint == $1.endpoint && $0.bytes == $1.bytes })
        }
        // A bad record half-way: what comes before it is played, then its error ends the replay.
        var damaged = bytes
        let preamble = try CaptureFormat.preamble(CaptureFormat.header(bytes)).count
        let records = try CaptureFormat.parse(bytes).records
        let half = records.prefix(records.count / 2).reduce(preamble) { $0 + CaptureRecord.headerSize + $1.bytes.count }
        damaged[half + 8] = 0x07
        try Data(damaged).write(to: URL(fileURLWithPath: dir.file("damaged.dxcap")))
        var played = 0
        do {
            for try await _ in try await ReplayTransport(path: dir.file("damaged.dxcap"), chunkBytes: 333).open() { played += 1 }
            Issue.record("a bad record was played through")
        } catch TransportError.io(let why) {
            #expect(why.contains("capture record at byte \(half) is not valid: endpoint 0x7"), "\(why)")
        }
        let before = records.prefix(records.count / 2).filter { $0.endpoint != .commandOut }.count
        #expect(played == before, "\(played) of \(before) records before the bad one")
        #expect(!fromMemory.contains { $0.endpoint == .commandOut })
        #expect(throws: TransportError.self) { try ReplayTransport(path: dir.file("none.dxcap")) }
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir.file("garbage.dxcap")))
        #expect(throws: TransportError.self) { try ReplayTransport(path: dir.file("garbage.dxcap")) }
    }
}
