/// Little-endian encoding of the ICD's integers and `str` values.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { append(v) }
    public mutating func u32(_ v: UInt32) { append(v) }
    public mutating func u64(_ v: UInt64) { append(v) }
    public mutating func i16(_ v: Int16) { append(v) }
    public mutating func i32(_ v: Int32) { append(v) }
    public mutating func raw(_ v: some Sequence<UInt8>) { bytes.append(contentsOf: v) }

    /// A `str`: u16 byte length then UTF-8. Longer strings are cut at a character boundary
    /// that fits, so the length field can never lie.
    public mutating func str(_ s: String) {
        var utf8 = Array(s.utf8)
        if utf8.count > Int(UInt16.max) {
            var cut = String(decoding: utf8.prefix(Int(UInt16.max)), as: UTF8.self)
            while cut.utf8.count > Int(UInt16.max) { cut.removeLast() }
            utf8 = Array(cut.utf8)
        }
        u16(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    private mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Why a payload could not be read.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The payload ended before the field `field` (payload too short).
    case truncated(field: String)
    /// Bytes were left over after the last field (payload too long).
    case trailingBytes(Int)
    /// A `str` field is not valid UTF-8.
    case invalidUTF8(field: String)
    /// A field holds a value the ICD does not define.
    case invalidValue(field: String, value: Int64)

    public var description: String {
        switch self {
        case .truncated(let f): "payload too short (ends before \(f))"
        case .trailingBytes(let n): "payload too long (\(n) extra bytes)"
        case .invalidUTF8(let f): "field \(f) is not valid UTF-8"
        case .invalidValue(let f, let v): "field \(f) has undefined value \(v)"
        }
    }
}

/// Reads little-endian fields from a payload, failing cleanly on short input.
public struct WireReader {
    public let bytes: ArraySlice<UInt8>
    public private(set) var offset: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.offset = bytes.startIndex
    }

    public init(_ bytes: [UInt8]) { self.init(bytes[...]) }

    public var remaining: Int { bytes.endIndex - offset }

    public mutating func u8(_ field: String = "u8") throws(WireError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated(field: field) }
        defer { offset += 1 }
        return bytes[offset]
    }
    public mutating func u16(_ field: String = "u16") throws(WireError) -> UInt16 { try int(field) }
    public mutating func u32(_ field: String = "u32") throws(WireError) -> UInt32 { try int(field) }
    public mutating func u64(_ field: String = "u64") throws(WireError) -> UInt64 { try int(field) }
    public mutating func i16(_ field: String = "i16") throws(WireError) -> Int16 { try int(field) }
    public mutating func i32(_ field: String = "i32") throws(WireError) -> Int32 { try int(field) }

    public mutating func str(_ field: String = "str") throws(WireError) -> String {
        let n = Int(try u16(field))
        guard remaining >= n else { throw .truncated(field: field) }
        let slice = bytes[offset..<offset + n]
        offset += n
        guard let s = String(validating: slice, as: UTF8.self) else { throw .invalidUTF8(field: field) }
        return s
    }

    public mutating func raw(_ n: Int, _ field: String = "bytes") throws(WireError) -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else { throw .truncated(field: field) }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    /// Fails when bytes are left: the ICD's MALFORMED covers payloads that are too long too.
    public func finish() throws(WireError) {
        if remaining != 0 { throw .trailingBytes(remaining) }
    }

    private mutating func int<T: FixedWidthInteger>(_ field: String) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .truncated(field: field) }
        var v: T = 0
        for i in 0..<size { v |= T(truncatingIfNeeded: bytes[offset + i]) << (8 * i) }
        offset += size
        return v
    }
}
