import CZlib
import DXProtocol
import Foundation

/// A decomposed scan with its geometry: the value every analysis works on (spine and hip
/// ROIs, vertebral morphometry, QC), live or offline, and what an exam stores for each site.
///
/// One row per configured line (index 0 is the scan's first line; a line that never arrived
/// is a row of NaN with `rowPresent` false), one column per detector channel. Images know
/// their geometry (docs/STYLE lesson 12): every size an analysis uses is in millimetres,
/// through `geometry`, never in pixels.
public struct DecomposedScan: Sendable {
    /// Where each pixel lies on the table, in millimetres.
    public struct Geometry: Sendable, Equatable, Codable {
        public var channels: Int
        public var lines: Int
        /// Column spacing: the detector's channel pitch.
        public var pitchMM: Double
        /// Row spacing: the scan's line step (negative when the scan runs towards smaller y).
        public var lineStepMM: Double
        /// The carriage's x for the scan: the detector's centre.
        public var carriageXMM: Double
        /// The table y of row 0.
        public var firstLineYMM: Double

        public enum CodingKeys: String, CodingKey {
            case channels, lines
            case pitchMM = "pitch_mm", lineStepMM = "line_step_mm", carriageXMM = "carriage_x_mm", firstLineYMM = "first_line_y_mm"
        }

        public init(channels: Int, lines: Int, pitchMM: Double, lineStepMM: Double, carriageXMM: Double, firstLineYMM: Double) {
            self.channels = channels; self.lines = lines; self.pitchMM = pitchMM; self.lineStepMM = lineStepMM
            self.carriageXMM = carriageXMM; self.firstLineYMM = firstLineYMM
        }

        public init(scan: ScanGeometry, configuration c: ScanConfiguration) {
            self.init(channels: scan.channels, lines: Int(c.lineCount), pitchMM: Double(scan.pitchUm) / 1000,
                      lineStepMM: Double(c.lineStepUm) / 1000, carriageXMM: Double(c.xUm) / 1000, firstLineYMM: Double(c.yStartUm) / 1000)
        }

        /// Table x of a column's centre (the detector is centred on the carriage).
        public func x(column: Int) -> Double { carriageXMM + (Double(column) - Double(channels - 1) / 2) * pitchMM }
        /// Table y of a row.
        public func y(row: Int) -> Double { firstLineYMM + Double(row) * lineStepMM }
        /// One pixel's area, cm².
        public var pixelAreaCm2: Double { pitchMM * abs(lineStepMM) / 100 }
    }

    /// Per-pixel facts beside the numbers.
    public struct Marks: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Classified bone (the decomposer's bone mask).
        public static let bone = Marks(rawValue: 1 << 0)
        /// No number: saturated, no photons or no beam (`PixelFlags.unmeasured`).
        public static let unmeasured = Marks(rawValue: 1 << 1)
        /// Measured from fewer than 25 photons above dark (`PixelFlags.photonStarved`).
        public static let lowCount = Marks(rawValue: 1 << 2)
        /// Unmeasured because a window saturated (too many photons: thin tissue or air), not
        /// for want of photons (metal). Files written before this mark existed lack it.
        public static let saturated = Marks(rawValue: 1 << 3)
    }

    /// Where it came from, so that a result computed from it can say so.
    public struct Provenance: Sendable, Equatable, Codable {
        public var capture: String?
        public var scanID: UInt32
        public var calibration: String
        public var region: String?
        /// The arm's angle for the scan, when known (0 AP, 90 lateral).
        public var armAngleDeg: Double?
        /// A single-energy scan (mode SINGLE): its bone plane is an image to find bones in
        /// (`SingleEnergyDecomposer`), not a density. Absent (nil) for a dual-energy scan.
        public var singleEnergy: Bool?
        /// The calibration's thickest soft tissue (lean and fat of its thickest cell, g/cm²):
        /// beyond it a pixel's numbers are the calibration's models extrapolated. Nil in scans
        /// decomposed before it was kept.
        public var calibratedSoftTissueGCm2: Double?

        public enum CodingKeys: String, CodingKey {
            case capture, calibration, region
            case scanID = "scan_id", armAngleDeg = "arm_angle_deg", singleEnergy = "single_energy"
            case calibratedSoftTissueGCm2 = "calibrated_soft_tissue_g_cm2"
        }

        public init(capture: String?, scanID: UInt32, calibration: String, region: String? = nil, armAngleDeg: Double? = nil) {
            self.capture = capture; self.scanID = scanID; self.calibration = calibration; self.region = region; self.armAngleDeg = armAngleDeg
        }
    }

    public var geometry: Geometry
    public var provenance: Provenance
    /// Bone mineral, g/cm² of hydroxyapatite; NaN where there is no number.
    public var bone: [Float]
    /// Soft tissue, g/cm².
    public var softTissue: [Float]
    /// Fat fraction of the soft tissue, 0…1.
    public var fatFraction: [Float]
    public var marks: [Marks]
    /// Which configured lines arrived.
    public var rowPresent: [Bool]
    /// The patient's movements the stillness check found while the scan was decomposed
    /// (`MotionEvent.line` is a row): rows on either side of one show the body in two places,
    /// and an analysis that measures across it says so.
    public var motion: [MotionEvent] = []

    public init(geometry: Geometry, provenance: Provenance) {
        self.geometry = geometry
        self.provenance = provenance
        let n = max(0, geometry.channels * geometry.lines)
        bone = [Float](repeating: .nan, count: n)
        softTissue = [Float](repeating: .nan, count: n)
        fatFraction = [Float](repeating: .nan, count: n)
        marks = [Marks](repeating: [], count: n)
        rowPresent = [Bool](repeating: false, count: max(0, geometry.lines))
    }

    /// Puts a decomposed line in its row (its index in the scan); a line outside the
    /// configuration, or of another width, is ignored (the line ledger counts it).
    public mutating func add(_ d: DecomposedLine) {
        let row = Int(d.index), n = geometry.channels
        guard row >= 0, row < geometry.lines, d.bone.count == n, d.soft.count == n, d.fatFraction.count == n,
              d.isBone.count == n, d.flags.count == n else { return }
        rowPresent[row] = true
        let base = row * n
        for c in 0..<n {
            bone[base + c] = Float(d.bone[c])
            softTissue[base + c] = Float(d.soft[c])
            fatFraction[base + c] = Float(d.fatFraction[c])
            var m: Marks = []
            if d.isBone[c] { m.insert(.bone) }
            if !d.flags[c].isDisjoint(with: .unmeasured) { m.insert(.unmeasured) }
            if d.flags[c].contains(.photonStarved) { m.insert(.lowCount) }
            if d.flags[c].contains(.saturated) { m.insert(.saturated) }
            marks[base + c] = m
        }
    }

    public func index(row: Int, column: Int) -> Int { row * geometry.channels + column }

    // MARK: - The file (`.dxdec`)

    /// Format version of the file; a reader refuses others.
    public static let formatVersion = 1
    static let magic = Array("DXDEC\n".utf8)
    /// The most deflate can compress: 258-byte matches coded in 2 bits each, about 1032 to 1
    /// (zlib's technical details, "Maximum compression factor").
    static let maxDeflateRatio = 1032

    private struct Header: Codable {
        var version: Int
        var geometry: Geometry
        var provenance: Provenance
        /// Bytes of the zlib stream that follows.
        var compressedBytes: Int
        /// Absent in files written before 2026-12-05 (no movement recorded: read as none).
        var motion: [MotionEvent]?
    }

    public enum FileError: Error, Sendable, Equatable, CustomStringConvertible {
        case notADecomposedScan
        case version(Int)
        case damaged(String)
        case io(String)

        public var description: String {
            switch self {
            case .notADecomposedScan: "not a decomposed scan (.dxdec)"
            case .version(let v): "decomposed scan format \(v), this dexa reads \(DecomposedScan.formatVersion)"
            case .damaged(let why): "damaged decomposed scan: \(why)"
            case .io(let why): why
            }
        }
    }

    /// The file's bytes: `DXDEC\n`, a JSON header line (version, geometry, provenance), then
    /// one zlib stream of the pixels: bone, soft tissue and fat fraction as little-endian
    /// float32 planes, the marks (one byte a pixel), the rows present (one byte a row).
    public func encoded() throws(FileError) -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity(bone.count * 13 + rowPresent.count)
        for plane in [bone, softTissue, fatFraction] {
            for v in plane { withUnsafeBytes(of: v.bitPattern.littleEndian) { raw.append(contentsOf: $0) } }
        }
        raw.append(contentsOf: marks.map(\.rawValue))
        raw.append(contentsOf: rowPresent.map { $0 ? 1 : 0 })
        var size = compressBound(uLong(raw.count))
        var packed = [UInt8](repeating: 0, count: Int(size))
        let status = packed.withUnsafeMutableBufferPointer { out in
            raw.withUnsafeBufferPointer { compress2(out.baseAddress, &size, $0.baseAddress, uLong($0.count), 6) }
        }
        guard status == Z_OK else { throw .io("zlib could not compress the decomposed scan (\(status))") }
        packed.removeSubrange(Int(size)...)
        let header = Header(version: Self.formatVersion, geometry: geometry, provenance: provenance, compressedBytes: packed.count,
                            motion: motion.isEmpty ? nil : motion)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let json = try? encoder.encode(header) else { throw .io("the header could not be written") }
        return Self.magic + Array(json) + [0x0A] + packed
    }

    /// Reads `bytes` back; anything short, inconsistent or of another version is refused.
    public init(decoding bytes: [UInt8]) throws(FileError) {
        guard bytes.starts(with: Self.magic) else { throw .notADecomposedScan }
        let rest = bytes[Self.magic.count...]
        guard let newline = rest.firstIndex(of: 0x0A) else { throw .damaged("no header") }
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(rest[..<newline])) else { throw .damaged("unreadable header") }
        guard header.version == Self.formatVersion else { throw .version(header.version) }
        let g = header.geometry
        guard g.channels > 0, g.lines >= 0, g.channels <= 65_536, g.lines <= 1_000_000, g.pitchMM.isFinite, (0.001...100).contains(g.pitchMM),
              g.lineStepMM.isFinite, (0.001...100).contains(abs(g.lineStepMM)), g.carriageXMM.isFinite, g.firstLineYMM.isFinite else {
            throw .damaged("impossible geometry")
        }
        let packed = Array(rest[(newline + 1)...])
        guard packed.count == header.compressedBytes else { throw .damaged("\(packed.count) bytes of pixels, the header says \(header.compressedBytes)") }
        let n = g.channels * g.lines
        let expected = n * 13 + g.lines
        // zlib's deflate expands at most 1032 to 1: a header claiming more pixels than its
        // stream can hold is refused before anything is allocated (a 233-byte file claiming
        // 65,536 × 1,000,000 pixels asked for 850 GB; found writing the fuzzing target).
        guard expected <= packed.count * Self.maxDeflateRatio else {
            throw .damaged("\(packed.count) bytes cannot hold \(g.channels) × \(g.lines) pixels")
        }
        var raw = [UInt8](repeating: 0, count: expected)
        var size = uLong(expected)
        let status = raw.withUnsafeMutableBufferPointer { out in
            packed.withUnsafeBufferPointer { uncompress(out.baseAddress, &size, $0.baseAddress, uLong($0.count)) }
        }
        guard status == Z_OK, Int(size) == expected else { throw .damaged("the pixels do not decompress to \(g.channels) × \(g.lines)") }
        func plane(_ k: Int) -> [Float] {
            (0..<n).map { i in
                let o = (k * n + i) * 4
                let bits = UInt32(raw[o]) | UInt32(raw[o + 1]) << 8 | UInt32(raw[o + 2]) << 16 | UInt32(raw[o + 3]) << 24
                return Float(bitPattern: bits)
            }
        }
        let motion = header.motion ?? []
        guard motion.allSatisfy({ (0..<g.lines).contains($0.line) && $0.shiftMM.isFinite }) else {
            throw .damaged("a movement recorded outside the scan's lines")
        }
        geometry = g
        provenance = header.provenance
        self.motion = motion
        bone = plane(0)
        softTissue = plane(1)
        fatFraction = plane(2)
        marks = raw[(12 * n)..<(13 * n)].map { Marks(rawValue: $0) }
        rowPresent = raw[(13 * n)...].map { $0 != 0 }
    }

    /// Writes the file atomically (a reader never sees half of it).
    public func write(to path: String) throws(FileError) {
        let bytes = try encoded()
        do { try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw .io("cannot write \(path): \(error.localizedDescription)")
        }
    }

    public static func read(path: String) throws(FileError) -> DecomposedScan {
        guard let data = FileManager.default.contents(atPath: path) else { throw .io("cannot read \(path)") }
        return try DecomposedScan(decoding: Array(data))
    }

    /// Where the decomposed scan of a capture is kept: beside it, with its own extension.
    public static func path(forCapture capture: String) -> String {
        (capture.hasSuffix(".dxcap") ? String(capture.dropLast(6)) : capture) + ".dxdec"
    }
}
