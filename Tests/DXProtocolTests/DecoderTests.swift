import Testing
@testable import DXProtocol

/// A small seeded generator so every failure can be replayed.
struct Seeded: RandomNumberGenerator {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
}

@Suite("Frame decoder: reassembly and resync (ICD §2)")
struct DecoderTests {
    static func frames(_ n: Int, rng: inout Seeded) -> [Frame] {
        (0..<n).map { i in
            let kind = FrameKind.allCases[Int(rng.next() % 4)]
            let len = Int(rng.next() % 700)
            return Frame(kind: kind, seq: UInt32(i + 1), payload: (0..<len).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
    }

    static func decodeAll(_ bytes: [UInt8], chunk: Int) -> (frames: [Frame], decoder: FrameDecoder) {
        var d = FrameDecoder()
        var out: [Frame] = []
        var i = 0
        while i < bytes.count {
            let j = min(bytes.count, i + chunk)
            d.append(bytes[i..<j])
            while let f = d.next() { out.append(f) }
            i = j
        }
        return (out, d)
    }

    @Test(arguments: [1, 2, 7, 512, 16_384, 1 << 20])
    func reassemblesAtAnyChunkSize(_ chunk: Int) throws {
        var rng = Seeded(UInt64(chunk))
        let frames = Self.frames(60, rng: &rng)
        let bytes = try frames.flatMap { try $0.encoded() }
        let (out, d) = Self.decodeAll(bytes, chunk: chunk)
        #expect(out == frames)
        #expect(d.errors == FrameErrorCounts())
        #expect(d.pendingBytes == 0)
    }

    /// Corrupts a stream in one of several ways and checks the ICD's promises: only frames
    /// that were sent come out (never one whose CRC failed), every frame the damage did
    /// not touch comes out, errors are counted, nothing crashes.
    @Test(arguments: 0..<400)
    func survivesCorruption(_ seed: Int) throws {
        var rng = Seeded(UInt64(seed) &+ 1000)
        let frames = Self.frames(12, rng: &rng)
        var encoded = try frames.map { try $0.encoded() }
        var damaged = Set<Int>()
        let kind = seed % 5
        for _ in 0..<(1 + Int(rng.next() % 3)) {
            let victim = Int(rng.next() % UInt64(frames.count))
            damaged.insert(victim)
            switch kind {
            case 0:  // bit flip anywhere in the frame
                let at = Int(rng.next() % UInt64(encoded[victim].count))
                encoded[victim][at] ^= UInt8(1 << (rng.next() % 8))
            case 1:  // truncation
                encoded[victim] = Array(encoded[victim].prefix(Int(rng.next() % UInt64(encoded[victim].count))))
            case 2:  // garbage between frames (may contain "DX")
                let junk = (0..<Int(rng.next() % 64 + 1)).map { _ in rng.next() % 5 == 0 ? 0x44 : UInt8(truncatingIfNeeded: rng.next()) }
                encoded[victim] = junk + encoded[victim]
                damaged.remove(victim)
            case 3:  // oversize or wrong length field
                let n = rng.next() % 2 == 0 ? UInt32(Frame.maxPayload + 1 + Int(rng.next() % 1000)) : UInt32(rng.next() % 200_000)
                encoded[victim].replaceSubrange(8..<12, with: withUnsafeBytes(of: n.littleEndian, Array.init))
            default:  // a run of random bytes replacing part of a frame
                let at = Int(rng.next() % UInt64(encoded[victim].count))
                let len = min(encoded[victim].count - at, Int(rng.next() % 40 + 1))
                for k in at..<(at + len) { encoded[victim][k] = UInt8(truncatingIfNeeded: rng.next()) }
            }
        }
        let bytes = encoded.flatMap { $0 }
        let (out, d) = Self.decodeAll(bytes, chunk: 1 + Int(rng.next() % 3000))
        // Nothing that was not sent.
        let foreign = out.filter { !frames.contains($0) }.count
        #expect(foreign == 0, "seed \(seed): decoder produced \(foreign) frames that were never sent")
        // Everything undamaged, in order.
        let expected = frames.enumerated().filter { !damaged.contains($0.offset) }.map(\.element.seq)
        let got = out.filter { f in frames.contains(f) && !damaged.contains(Int(f.seq) - 1) }.map(\.seq)
        #expect(got == expected, "seed \(seed): lost an undamaged frame")
        let clean = try frames.flatMap { try $0.encoded() }
        if bytes != clean { #expect(d.errors.resyncs > 0 || out.count < frames.count, "damage went uncounted") }
    }

    @Test func randomBytesNeverYieldAFrame() {
        var rng = Seeded(77)
        var d = FrameDecoder()
        for _ in 0..<200 {
            d.append((0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            while let f = d.next() { Issue.record("random bytes decoded as a frame: \(f.kind) \(f.payload.count) bytes") }
        }
        #expect(d.errors.resyncs > 0)
        #expect(d.errors.droppedBytes > 700_000)
    }

    @Test func aLyingLengthDoesNotHoldBackLaterFrames() throws {
        // A header whose length claims far more than follows; the frames behind it must still come out.
        var liar = try Frame(kind: .event, seq: 1, payload: [1, 2, 3]).encoded()
        liar.replaceSubrange(8..<12, with: [0x00, 0x00, 0x03, 0x00])  // 196,608 bytes claimed
        let good = try Frame(kind: .response, seq: 2, payload: [9, 9]).encoded()
        var d = FrameDecoder()
        d.append(liar + good)
        #expect(d.next() == Frame(kind: .response, seq: 2, payload: [9, 9]))
        #expect(d.errors.resyncs == 1)
    }

    @Test func emptyPayloadAndMaximumPayload() throws {
        let frames = [Frame(kind: .command, seq: 1, payload: []),
                      Frame(kind: .data, seq: 2, payload: [UInt8](repeating: 0x44, count: Frame.maxPayload))]
        let (out, d) = Self.decodeAll(try frames.flatMap { try $0.encoded() }, chunk: 16_384)
        #expect(out == frames)
        #expect(d.errors.resyncs == 0)
    }
}

@Suite("Capture files (ICD §7)")
struct CaptureTests {
    static func sample() throws -> [UInt8] {
        let header = CaptureHeader(device: CodecTests.info, scans: [CaptureScan(scanID: 5, role: .patient, region: .leftHip)],
                                   phantom: Phantom(name: "esp", rois: [Phantom.ROI(name: "L2", xUm: [0, 10], yUm: [5, 6])]))
        var bytes = try CaptureFormat.preamble(header)
        bytes += CaptureRecord(tUs: 1, endpoint: .commandOut, bytes: [1, 2, 3]).encoded
        bytes += CaptureRecord(tUs: 2, endpoint: .dataIn, bytes: [UInt8](repeating: 7, count: 100)).encoded
        return bytes
    }

    @Test func roundTrip() throws {
        let c = try CaptureFormat.parse(Self.sample())
        #expect(c.header.device == CodecTests.info)
        #expect(c.header.scans == [CaptureScan(scanID: 5, role: .patient, region: .leftHip)])
        #expect(c.header.phantom?.rois?.first?.name == "L2")
        #expect(c.records.count == 2)
        #expect(c.records[1].endpoint == .dataIn)
        #expect(!c.truncatedTail)
    }

    @Test func headerUsesTheICDNames() throws {
        let bytes = try Self.sample()
        let n = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        let json = String(decoding: bytes[12..<(12 + n)], as: UTF8.self)
        for key in ["\"fw_major\"", "\"max_line_rate_hz\"", "\"air_zone_y_um\"", "\"scan_id\"", "\"role\"", "\"region\":\"left_hip\"", "\"created\""] {
            #expect(json.contains(key), "header lacks \(key)")
        }
    }

    @Test func cutShortAtEveryByte() throws {
        let bytes = try Self.sample()
        let full = try CaptureFormat.parse(bytes)
        let headerEnd = bytes.count - full.records.map { $0.encoded.count }.reduce(0, +)
        for cut in 0..<bytes.count {
            let part = Array(bytes.prefix(cut))
            if cut < headerEnd {
                #expect(throws: CaptureError.self) { try CaptureFormat.parse(part) }
            } else {
                let c = try CaptureFormat.parse(part)
                #expect(c.records == Array(full.records.prefix(c.records.count)))
                #expect(c.truncatedTail == (cut != headerEnd && cut != headerEnd + full.records[0].encoded.count))
            }
        }
    }

    @Test func garbageIsAClearError() {
        #expect(throws: CaptureError.notACapture) { try CaptureFormat.parse(Array("hello world".utf8)) }
        #expect(throws: CaptureError.notACapture) { try CaptureFormat.parse([]) }
        var v2 = CaptureFormat.magic + [2, 0]
        #expect(throws: CaptureError.unsupportedVersion(2)) { try CaptureFormat.parse(v2) }
        v2 = CaptureFormat.magic + [1, 0, 5, 0, 0, 0] + Array("{bad}".utf8)
        #expect(throws: CaptureError.self) { try CaptureFormat.parse(v2) }
        v2 = CaptureFormat.magic + [1, 0, 0xFF, 0xFF, 0xFF, 0x7F]
        #expect(throws: CaptureError.self) { try CaptureFormat.parse(v2) }
    }
}
