/// DICOM unique identifiers for what the DX-1 makes (PS3.5 §9, Annex B).
///
/// With a configured root (an organisation's registered root, `dicom.uid_root`), a UID is the
/// root and the object's numeric path: `ROOT.<exam number>.<series>.<instance>`. Without one, it is a
/// UUID-derived UID (PS3.5 §B.2, ISO/IEC 9834-8): `2.25.` and a UUID as one decimal number,
/// the UUID a version 8 (RFC 9562 §5.8) made from a 128-bit FNV-1a hash of the object's name
/// (station, exam, object). Either way a UID depends only on what it names, so the same
/// object exported twice or sent again after a restart keeps its UID, and a PACS sees the
/// same instance, not a copy.
public struct UIDGenerator: Sendable, Equatable {
    /// The organisation's root, or nil for UUID-derived UIDs.
    public var root: String?
    /// What makes this station's names unique among stations sharing a root: its device
    /// serial number, say. Part of every name hashed; with a root, hashed into one number.
    public var station: String

    public init(root: String?, station: String) {
        self.root = root
        self.station = station
    }

    /// What is wrong with `root`, or nil: digits and dots, no empty or zero-led component,
    /// short enough to leave room for the object's path within 64 characters.
    public static func problem(root: String) -> String? {
        let parts = root.split(separator: ".", omittingEmptySubsequences: false)
        guard !root.isEmpty, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }) else {
            return "UID root \"\(root)\" must be numbers separated by dots"
        }
        if parts.contains(where: { $0.count > 1 && $0.hasPrefix("0") }) { return "UID root \"\(root)\": a component starts with 0" }
        if root.count > 24 { return "UID root \"\(root)\" is longer than 24 characters (leaves no room for the object's path in 64)" }
        return nil
    }

    /// The UID of the object at `path` (series, instance; empty for the study itself) of
    /// the exam `exam` (a name unique on this station for all time: the exam's number and
    /// when it was created, so that a rebuilt database starting at exam 1 again makes new
    /// UIDs). With a root: `ROOT.<exam number>.<path>`, the exam number a hash of station and
    /// exam of at most 19 digits (within 64 characters: 24 + 1 + 19 + 2 x 4); without a root:
    /// UUID-derived from station, exam and path.
    public func uid(exam: String, _ path: [Int] = []) -> String {
        let suffix = path.map { "." + String($0) }.joined()
        if let root {
            let examNumber = UInt64(truncatingIfNeeded: Self.fnv1a128("\(station)\u{0}\(exam)")) % 9_999_999_999_999_999_999 + 1
            return "\(root).\(examNumber)\(suffix)"
        }
        return "2.25." + String(Self.uuidV8(Self.fnv1a128("dexa\u{0}\(station)\u{0}\(exam)\u{0}\(suffix)")))
    }

    /// 128-bit FNV-1a (the FNV offset basis and prime for 128 bits).
    static func fnv1a128(_ s: String) -> UInt128 {
        var h: UInt128 = 0x6c62272e07bb014262b821756295c58d
        let prime: UInt128 = 0x0000000001000000000000000000013B
        for byte in s.utf8 {
            h ^= UInt128(byte)
            h = h &* prime
        }
        return h
    }

    /// The 128 bits as an RFC 9562 version-8 UUID: version 8 in bits 48-51, the variant 10 in
    /// bits 64-65 (counted from the most significant).
    static func uuidV8(_ bits: UInt128) -> UInt128 {
        var u = bits
        u &= ~(UInt128(0xF) << 76)
        u |= UInt128(0x8) << 76
        u &= ~(UInt128(0x3) << 62)
        u |= UInt128(0x2) << 62
        return u
    }
}

/// The SOP classes the DX-1 sends and uses (PS3.4 Annex B and others).
public enum SOPClass {
    public static let verification = "1.2.840.10008.1.1"
    public static let secondaryCapture = "1.2.840.10008.5.1.4.1.1.7"
    public static let comprehensiveSR = "1.2.840.10008.5.1.4.1.1.88.33"
    public static let xRayRadiationDoseSR = "1.2.840.10008.5.1.4.1.1.88.67"
    public static let keyObjectSelection = "1.2.840.10008.5.1.4.1.1.88.59"
    public static let modalityWorklistFind = "1.2.840.10008.5.1.4.31"
    public static let modalityPerformedProcedureStep = "1.2.840.10008.3.1.2.3.3"
    public static let storageCommitmentPushModel = "1.2.840.10008.1.20.1"
}
