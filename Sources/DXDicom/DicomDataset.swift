/// A DICOM attribute tag: group and element (PS3.5 §7.1).
public struct DicomTag: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var group: UInt16
    public var element: UInt16

    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }

    /// (group << 16) | element, as the C interface takes it.
    public var packed: UInt32 { UInt32(group) << 16 | UInt32(element) }

    public static func < (a: DicomTag, b: DicomTag) -> Bool { a.packed < b.packed }

    public var description: String {
        let g = String(group, radix: 16, uppercase: true), e = String(element, radix: 16, uppercase: true)
        return "(\(String(repeating: "0", count: 4 - g.count))\(g),\(String(repeating: "0", count: 4 - e.count))\(e))"
    }
}

/// What an attribute holds. Every value of a text or number VR travels as its DICOM text
/// (numbers in decimal, several values separated by `\`); the data dictionary gives the VR.
public enum DicomValue: Sendable, Equatable {
    case text(String)
    /// A type 2 attribute present without a value, or a sequence with no item.
    case empty
    /// Binary data: OB, or OW when `words` (little-endian 16-bit words).
    case bytes([UInt8], words: Bool)
    case sequence([DicomDataset])
}

/// A DICOM dataset as a plain value: its attributes by tag, written in tag order. Built here
/// from the exam's result values; DCMTK encodes it (DCMTK.swift), so nothing in Swift writes
/// DICOM bytes.
public struct DicomDataset: Sendable, Equatable {
    public private(set) var attributes: [DicomTag: DicomValue] = [:]

    public init() {}

    public subscript(tag: DicomTag) -> DicomValue? {
        get { attributes[tag] }
        set { attributes[tag] = newValue }
    }

    /// The attribute's text, or nil when it has none.
    public func text(_ tag: DicomTag) -> String? {
        if case .text(let s) = attributes[tag] { return s }
        return nil
    }

    /// The sequence's items (none when absent).
    public func items(_ tag: DicomTag) -> [DicomDataset] {
        if case .sequence(let items) = attributes[tag] { return items }
        return []
    }

    /// Sets a text attribute; nil or an empty text makes it present and empty (type 2).
    public mutating func set(_ tag: DicomTag, _ value: String?) {
        if let value, !value.isEmpty { attributes[tag] = .text(value) } else { attributes[tag] = .empty }
    }

    public mutating func set(_ tag: DicomTag, _ value: Int) { attributes[tag] = .text(String(value)) }

    public mutating func set(_ tag: DicomTag, items: [DicomDataset]) { attributes[tag] = items.isEmpty ? .empty : .sequence(items) }

    /// The tags in the order they are written.
    public var tags: [DicomTag] { attributes.keys.sorted() }

    /// Whether any text in the dataset (its items included) is outside ASCII, so that it
    /// needs Specific Character Set ISO_IR 192 (UTF-8).
    public var needsUnicode: Bool {
        attributes.values.contains { value in
            switch value {
            case .text(let s): return s.utf8.contains { $0 >= 0x80 }
            case .sequence(let items): return items.contains(where: \.needsUnicode)
            case .empty, .bytes: return false
            }
        }
    }
}
