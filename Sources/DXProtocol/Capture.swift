import Foundation

/// What a capture header says about one scan, ICD §7.
public struct CaptureScan: Sendable, Equatable, Codable {
    public enum Role: String, Sendable, Codable, CaseIterable {
        case dark, air, calibration, qc, patient
    }
    public enum Region: String, Sendable, Codable, CaseIterable {
        case apSpine = "ap_spine", leftHip = "left_hip", rightHip = "right_hip", lateralSpine = "lateral_spine"
    }

    public var scanID: UInt32
    public var role: Role
    public var region: Region?

    public enum CodingKeys: String, CodingKey {
        case scanID = "scan_id", role, region
    }

    public init(scanID: UInt32, role: Role, region: Region? = nil) {
        self.scanID = scanID; self.role = role; self.region = region
    }
}

/// A phantom on the table, ICD §8.
public struct Phantom: Sendable, Equatable, Codable {
    public struct Cell: Sendable, Equatable, Codable {
        public var xUm: [Int32]
        public var yUm: [Int32]
        public var hydroxyapatite: Double
        public var lean: Double
        public var fat: Double
        public enum CodingKeys: String, CodingKey {
            case xUm = "x_um", yUm = "y_um"
            case hydroxyapatite = "hydroxyapatite_g_cm2", lean = "lean_g_cm2", fat = "fat_g_cm2"
        }
        public init(xUm: [Int32], yUm: [Int32], hydroxyapatite: Double, lean: Double, fat: Double) {
            self.xUm = xUm; self.yUm = yUm; self.hydroxyapatite = hydroxyapatite; self.lean = lean; self.fat = fat
        }
        /// A cell from a file (a capture's header, a phantom file): its corners must be two x
        /// and two y, its contents areal densities a phantom can hold. Before, a cell with one
        /// corner was read and then silently left out by every reader.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            xUm = try Phantom.corners(c, .xUm)
            yUm = try Phantom.corners(c, .yUm)
            hydroxyapatite = try Phantom.density(c, .hydroxyapatite)
            lean = try Phantom.density(c, .lean)
            fat = try Phantom.density(c, .fat)
        }
    }
    public struct ROI: Sendable, Equatable, Codable {
        public var name: String
        public var xUm: [Int32]
        public var yUm: [Int32]
        public enum CodingKeys: String, CodingKey { case name, xUm = "x_um", yUm = "y_um" }
        public init(name: String, xUm: [Int32], yUm: [Int32]) { self.name = name; self.xUm = xUm; self.yUm = yUm }
        /// An ROI from a file: two x and two y, like a cell (before, one with a single corner
        /// was read and silently left out).
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            xUm = try Phantom.corners(c, .xUm)
            yUm = try Phantom.corners(c, .yUm)
        }
    }

    /// The largest areal density a cell may claim: 100 g/cm² is a metre of water.
    public static let maxDensityGCm2 = 100.0

    static func corners<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K) throws -> [Int32] {
        let v = try c.decode([Int32].self, forKey: key)
        guard v.count == 2 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "expected two corners [from, to], got \(v.count) values")
        }
        return v
    }

    static func density<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K) throws -> Double {
        let v = try c.decode(Double.self, forKey: key)
        guard v.isFinite, (0...maxDensityGCm2).contains(v) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(v) g/cm² is not an areal density a phantom holds (0 to \(maxDensityGCm2))")
        }
        return v
    }
    public var name: String
    public var cells: [Cell]?
    public var rois: [ROI]?

    public init(name: String, cells: [Cell]? = nil, rois: [ROI]? = nil) {
        self.name = name; self.cells = cells; self.rois = rois
    }
}

/// The JSON header of a capture, ICD §7. Unknown keys are ignored on reading.
public struct CaptureHeader: Sendable, Equatable, Codable {
    public var device: DeviceInfo
    public var created: String
    public var scans: [CaptureScan]
    public var phantom: Phantom?
    /// For a patient scan: who was scanned, as far as the scores need it (a key the ICD
    /// allows; docs/ICD-NOTES.md item 28). No name and no identifier: a capture goes to service.
    public var patient: CapturePatient?

    public init(device: DeviceInfo, created: Date = Date(), scans: [CaptureScan], phantom: Phantom? = nil, patient: CapturePatient? = nil) {
        self.device = device
        self.created = created.formatted(.iso8601)
        self.scans = scans
        self.phantom = phantom
        self.patient = patient
    }
}

/// The patient's sex and birth date in a capture header: what T- and Z-scores need.
public struct CapturePatient: Sendable, Equatable, Codable {
    /// `female` or `male`.
    public var sex: String
    /// YYYY-MM-DD.
    public var birthDate: String

    public enum CodingKeys: String, CodingKey {
        case sex
        case birthDate = "birth_date"
    }

    public init(sex: String, birthDate: String) { self.sex = sex; self.birthDate = birthDate }
}

/// One record of a capture: bytes that crossed one endpoint, and when.
public struct CaptureRecord: Sendable, Equatable {
    public var tUs: UInt64
    public var endpoint: Endpoint
    public var bytes: [UInt8]

    public init(tUs: UInt64, endpoint: Endpoint, bytes: [UInt8]) {
        self.tUs = tUs; self.endpoint = endpoint; self.bytes = bytes
    }

    public static let headerSize = 14

    public var encoded: [UInt8] {
        var w = WireWriter(capacity: CaptureRecord.headerSize + bytes.count)
        w.u64(tUs); w.u8(endpoint.rawValue); w.u8(0); w.u32(UInt32(bytes.count)); w.raw(bytes)
        return w.bytes
    }
}

/// Why a capture could not be read.
public enum CaptureError: Error, Equatable, Sendable, CustomStringConvertible {
    case notACapture
    case unsupportedVersion(UInt16)
    case truncatedHeader
    case badHeader(String)
    case badRecord(offset: Int, String)

    public var description: String {
        switch self {
        case .notACapture: "not a DX-1 capture (bad magic)"
        case .unsupportedVersion(let v): "capture version \(v) is not supported (this reader knows version 1)"
        case .truncatedHeader: "capture header is truncated"
        case .badHeader(let why): "capture header is not valid: \(why)"
        case .badRecord(let offset, let why): "capture record at byte \(offset) is not valid: \(why)"
        }
    }
}

/// The `.dxcap` file format, ICD §7, as pure encode and decode functions.
public enum CaptureFormat {
    public static let magic: [UInt8] = [0x44, 0x58, 0x43, 0x41, 0x50, 0x00]  // "DXCAP\0"
    public static let version: UInt16 = 1
    /// A header longer than this is treated as corrupt rather than allocated.
    public static let maxHeaderBytes = 16 << 20
    /// Records are what one transfer carried; anything larger is corrupt.
    public static let maxRecordBytes = 64 << 20

    /// Magic, version and header: everything before the first record.
    public static func preamble(_ header: CaptureHeader) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try encoder.encode(header)
        var w = WireWriter(capacity: fixedPreambleBytes + json.count)
        w.raw(magic)
        w.u16(version)
        w.u32(UInt32(json.count))
        w.raw(json)
        return w.bytes
    }

    /// A capture read from bytes.
    public struct Contents: Sendable {
        public var header: CaptureHeader
        public var records: [CaptureRecord]
        /// True when the file ended inside a record (a crash while writing); that record is ignored.
        public var truncatedTail: Bool
    }

    /// The bytes before the header's JSON: magic, version and the JSON's length.
    public static let fixedPreambleBytes = 12

    /// The header's length from the first `fixedPreambleBytes` of a file: what to read next
    /// to have the whole preamble.
    public static func headerLength(_ first: [UInt8]) throws(CaptureError) -> Int {
        var r = WireReader(first)
        guard let m = try? r.raw(6), Array(m) == magic else { throw .notACapture }
        guard let v = try? r.u16() else { throw .truncatedHeader }
        guard v == version else { throw .unsupportedVersion(v) }
        guard let n = try? r.u32() else { throw .truncatedHeader }
        guard Int(n) <= maxHeaderBytes else { throw .badHeader("length \(n) is implausible") }
        return Int(n)
    }

    /// The header alone, from a file's first bytes (at least its preamble): what a capture
    /// is, without reading its records.
    public static func header(_ bytes: [UInt8]) throws(CaptureError) -> CaptureHeader {
        try readPreamble(bytes).header
    }

    static func readPreamble(_ bytes: [UInt8]) throws(CaptureError) -> (header: CaptureHeader, length: Int) {
        let n = try headerLength(Array(bytes.prefix(fixedPreambleBytes)))
        guard bytes.count >= fixedPreambleBytes + n else { throw .truncatedHeader }
        let json = bytes[fixedPreambleBytes..<(fixedPreambleBytes + n)]
        do {
            return (try JSONDecoder().decode(CaptureHeader.self, from: Data(json)), fixedPreambleBytes + n)
        } catch {
            throw .badHeader(String(describing: error).prefix(200).description)
        }
    }

    public static func parse(_ bytes: [UInt8]) throws(CaptureError) -> Contents {
        let (header, length) = try readPreamble(bytes)
        // The records read in place (a whole file is not copied into a reader's buffer).
        var records: [CaptureRecord] = []
        var at = length
        while let (record, end) = try CaptureRecordReader.record(in: bytes[...], at: at, fileOffset: at) {
            records.append(record)
            at = end
        }
        return Contents(header: header, records: records, truncatedTail: at < bytes.count)
    }
}

/// Records from a capture's bytes as they are read (ICD §7): append what was read, take the
/// whole records it completes. `CaptureFormat.parse` reads a file held whole with the same
/// `record(in:at:fileOffset:)`, and a streaming reader a chunk at a time (`CaptureFile`), so
/// the two cannot disagree.
public struct CaptureRecordReader: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    /// The file offset of the next record, for messages.
    public private(set) var offset: Int

    /// `offset`: where the first record starts in the file (after the preamble).
    public init(offset: Int) { self.offset = offset }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        // What was consumed is dropped before the buffer grows again.
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole record, nil when the bytes so far end inside one (more may come; at the
    /// end of the file, `pending` bytes are a cut tail).
    public mutating func next() throws(CaptureError) -> CaptureRecord? {
        guard let (record, end) = try Self.record(in: buffer[...], at: start, fileOffset: offset) else { return nil }
        offset += end - start
        start = end
        return record
    }

    /// Bytes read that make no whole record yet.
    public var pending: Int { buffer.count - start }

    /// The record starting at index `at` of `bytes` and the index after it; nil when the bytes
    /// end inside it. A record that cannot be one (an unknown endpoint, an implausible length)
    /// is an error as soon as its header is there; `fileOffset` names where it is.
    public static func record(in bytes: ArraySlice<UInt8>, at: Int, fileOffset: Int) throws(CaptureError) -> (CaptureRecord, Int)? {
        let headerSize = CaptureRecord.headerSize
        guard bytes.endIndex - at >= headerSize else { return nil }
        var r = WireReader(bytes[at..<(at + headerSize)])
        guard let t = try? r.u64(), let ep = try? r.u8(), (try? r.u8()) != nil, let len = try? r.u32() else { return nil }
        guard let endpoint = Endpoint(rawValue: ep) else { throw .badRecord(offset: fileOffset, "endpoint 0x\(String(ep, radix: 16))") }
        guard Int(len) <= CaptureFormat.maxRecordBytes else { throw .badRecord(offset: fileOffset, "length \(len) is implausible") }
        let end = at + headerSize + Int(len)
        guard bytes.endIndex >= end else { return nil }
        return (CaptureRecord(tUs: t, endpoint: endpoint, bytes: Array(bytes[(at + headerSize)..<end])), end)
    }
}
