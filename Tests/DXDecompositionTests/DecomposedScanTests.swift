import DXProtocol
import Foundation
import Testing
@testable import DXDecomposition

/// The decomposed scan: geometry in millimetres, a file that reads back bit for bit, and
/// refuses anything damaged without crashing.
@Suite struct DecomposedScanTests {
    static func sample(channels: Int = 24, lines: Int = 30, seed: UInt64 = 7) -> DecomposedScan {
        var scan = DecomposedScan(geometry: .init(channels: channels, lines: lines, pitchMM: 1.0, lineStepMM: -0.5, carriageXMM: 200,
                                                  firstLineYMM: 580),
                                  provenance: .init(capture: "/x/a.dxcap", scanID: 9, calibration: "/x/cal.dxcap", region: "ap_spine", armAngleDeg: 0))
        scan.provenance.calibratedSoftTissueGCm2 = 31
        var state = seed
        func next() -> Double { state = state &* 6364136223846793005 &+ 1442695040888963407; return Double(state >> 11) / Double(1 << 53) }
        for row in 0..<lines where row != 7 {  // line 7 never arrived
            let bone = (0..<channels).map { c in c == 3 ? Double.nan : next() * 1.5 }
            let flags: [PixelFlags] = (0..<channels).map { c in c == 3 ? .saturated : (c == 5 ? .photonStarved : []) }
            scan.add(DecomposedLine(index: UInt32(row), yUm: Int32(580_000 - row * 500), xUm: 200_000, bone: bone,
                                    soft: (0..<channels).map { _ in 15 + next() }, fatFraction: (0..<channels).map { _ in next() },
                                    isBone: (0..<channels).map { c in c > 8 && c < 16 }, flags: flags))
        }
        return scan
    }

    static func same(_ a: DecomposedScan, _ b: DecomposedScan) -> Bool {
        a.geometry == b.geometry && a.provenance == b.provenance && a.marks == b.marks && a.rowPresent == b.rowPresent
            && a.bone.map(\.bitPattern) == b.bone.map(\.bitPattern) && a.softTissue.map(\.bitPattern) == b.softTissue.map(\.bitPattern)
            && a.fatFraction.map(\.bitPattern) == b.fatFraction.map(\.bitPattern) && a.motion == b.motion
    }

    @Test func geometryIsInMillimetres() {
        let g = Self.sample().geometry
        #expect(g.x(column: 0) == 200 - 11.5 && g.x(column: 23) == 200 + 11.5)
        #expect(g.y(row: 0) == 580 && g.y(row: 10) == 575)
        #expect(abs(g.pixelAreaCm2 - 0.005) < 1e-12)
    }

    @Test func linesGoToTheirRowsWithTheirMarks() {
        let s = Self.sample()
        #expect(s.rowPresent.filter { $0 }.count == 29 && !s.rowPresent[7])
        #expect(s.bone[s.index(row: 7, column: 10)].isNaN)
        #expect(s.marks[s.index(row: 2, column: 3)].contains(.unmeasured))
        #expect(s.marks[s.index(row: 2, column: 5)].contains(.lowCount))
        #expect(s.marks[s.index(row: 2, column: 10)].contains(.bone) && !s.marks[s.index(row: 2, column: 2)].contains(.bone))
        // A line outside the configuration, or of another width, changes nothing.
        var t = s
        t.add(DecomposedLine(index: 30, yUm: 0, xUm: 0, bone: [1], soft: [1], fatFraction: [0], isBone: [true], flags: [[]]))
        t.add(DecomposedLine(index: 7, yUm: 0, xUm: 0, bone: [1], soft: [1], fatFraction: [0], isBone: [true], flags: [[]]))
        #expect(Self.same(s, t))
    }

    @Test func theFileReadsBackBitForBit() throws {
        let s = Self.sample()
        let back = try DecomposedScan(decoding: try s.encoded())
        #expect(Self.same(s, back))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dxdec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = DecomposedScan.path(forCapture: dir.path + "/2026-scan1-patient.dxcap")
        #expect(path.hasSuffix("2026-scan1-patient.dxdec"))
        try s.write(to: path)
        #expect(Self.same(s, try DecomposedScan.read(path: path)))
    }

    /// The patient's movements travel with the pixels; a file from before they were recorded
    /// reads as a still scan, and one naming a movement outside its lines is refused.
    @Test func movementsReadBack() throws {
        var s = Self.sample()
        s.motion = [MotionEvent(line: 12, shiftMM: -1.5, detectedAtLine: 15)]
        let back = try DecomposedScan(decoding: try s.encoded())
        #expect(Self.same(s, back) && back.motion.count == 1)
        let still = try DecomposedScan(decoding: try Self.sample().encoded())
        #expect(still.motion.isEmpty)
        #expect(!String(decoding: try Self.sample().encoded().prefix(400), as: UTF8.self).contains("motion"))
        for line in [-1, s.geometry.lines] {
            var bad = s
            bad.motion = [MotionEvent(line: line, shiftMM: 2, detectedAtLine: 0)]
            #expect(throws: DecomposedScan.FileError.damaged("a movement recorded outside the scan's lines")) {
                _ = try DecomposedScan(decoding: try bad.encoded())
            }
        }
    }

    /// Truncated at every length, bytes flipped, another version, garbage: refused, never a crash.
    @Test func damagedFilesAreRefused() throws {
        let bytes = try Self.sample(channels: 8, lines: 6).encoded()
        for n in 0..<bytes.count {
            #expect(throws: DecomposedScan.FileError.self) { _ = try DecomposedScan(decoding: Array(bytes.prefix(n))) }
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            var damaged = bytes
            let i = Int.random(in: 0..<damaged.count, using: &rng)
            damaged[i] ^= UInt8.random(in: 1...255, using: &rng)
            // Either refused, or (a flipped pixel value inside the zlib stream that still
            // inflates) read as a scan of the same geometry.
            if let read = try? DecomposedScan(decoding: damaged) { #expect(read.geometry.channels * read.geometry.lines == read.bone.count) }
        }
        let needle = Array("\"version\":1".utf8)
        if let at = (0...(bytes.count - needle.count)).first(where: { Array(bytes[$0..<($0 + needle.count)]) == needle }) {
            var other = bytes
            other[at + needle.count - 1] = UInt8(ascii: "2")
            #expect(throws: DecomposedScan.FileError.version(2)) { _ = try DecomposedScan(decoding: other) }
        } else {
            Issue.record("no version in the header")
        }
        for _ in 0..<200 {
            let garbage = (0..<Int.random(in: 0..<400, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(throws: DecomposedScan.FileError.self) { _ = try DecomposedScan(decoding: Array("DXDEC\n".utf8) + garbage) }
        }
    }

    /// Found writing the fuzzing target (Tests/Fuzz/crashes/decomposed): a 233-byte file whose
    /// header claims 65,536 × 1,000,000 pixels made the reader allocate 850 GB for them before
    /// inflating a byte. The claim is now held to what its stream can hold (deflate's 1032:1).
    @Test func aHeaderClaimingMorePixelsThanItsStreamCanHoldIsRefusedBeforeAllocating() throws {
        func file(channels: Int, lines: Int, stream: [UInt8]) -> [UInt8] {
            let header = #"{"compressedBytes":\#(stream.count),"geometry":{"carriage_x_mm":0,"channels":\#(channels),"first_line_y_mm":0,"line_step_mm":1,"lines":\#(lines),"pitch_mm":1},"provenance":{"calibration":"x","scan_id":1},"version":1}"#
            return Array("DXDEC\n".utf8) + Array(header.utf8) + [0x0A] + stream
        }
        let small = try Self.sample(channels: 8, lines: 6).encoded()
        // The magic's newline, then the header's: the zlib stream follows.
        let headerEnd = try #require(small[6...].firstIndex(of: 0x0A))
        let stream = Array(small[(headerEnd + 1)...])
        #expect(throws: DecomposedScan.FileError.damaged("\(stream.count) bytes cannot hold 65536 × 1000000 pixels")) {
            _ = try DecomposedScan(decoding: file(channels: 65_536, lines: 1_000_000, stream: stream))
        }
        // The same stream under its own geometry still reads.
        #expect(try DecomposedScan(decoding: file(channels: 8, lines: 6, stream: stream)).bone.count == 48)
    }
}
