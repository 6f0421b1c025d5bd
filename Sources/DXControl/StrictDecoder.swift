/// Decodes a request's parameters and refuses every key the type did not ask for, at any
/// depth: `scan.run` with `"tube_curent_ua"` must be refused, never run with the default
/// current (docs/control-protocol.md, "Parameters").
///
/// A `Decoder` over `JSONValue` that notes, for each object it hands out, which keys the
/// type's `init(from:)` looked at (`contains`, `decode`, `decodeIfPresent`, nested
/// containers). Once decoding succeeded, any key of any object that was never looked at is
/// an unknown parameter. An object read as a whole (a dictionary, or a `JSONValue` field
/// that takes anything) asks for `allKeys`, which accepts all of them.
public enum StrictDecoder {
    /// Why parameters were refused: the dotted path of the first unknown key, or the
    /// decoding error with its path.
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        case unknownKey(path: String, known: [String])
        case invalid(String)

        public var description: String {
            switch self {
            case let .unknownKey(path, known):
                known.isEmpty ? "unknown parameter '\(path)' (this method takes none)"
                    : "unknown parameter '\(path)' (known here: \(known.joined(separator: ", ")))"
            case .invalid(let why): why
            }
        }
    }

    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws(Failure) -> T {
        let ledger = KeyLedger()
        let decoded: T
        do {
            decoded = try T(from: ValueDecoder(value: value, path: [], ledger: ledger))
        } catch let e as DecodingError {
            throw .invalid(describe(e))
        } catch {
            throw .invalid("\(error)")
        }
        if let unknown = ledger.firstUnknown(in: value, path: []) { throw unknown }
        return decoded
    }

    /// One line naming the field and what was wrong with it.
    public static func describe(_ e: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return p.isEmpty ? "" : "'\(p)': "
        }
        switch e {
        case let .typeMismatch(t, c): return "\(path(c))expected \(name(t))"
        case let .valueNotFound(t, c): return "\(path(c))expected \(name(t)), got null"
        case let .keyNotFound(k, c):
            let parent = c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue } + [k.stringValue]
            return "missing '\(parent.joined(separator: "."))'"
        case let .dataCorrupted(c): return "\(path(c))\(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    private static func name(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Double.Type, is Float.Type: "a number"
        case is Int.Type, is Int64.Type, is Int32.Type, is Int16.Type, is Int8.Type: "an integer"
        case is UInt.Type, is UInt64.Type, is UInt32.Type, is UInt16.Type, is UInt8.Type: "a non-negative integer"
        default: "\(t)"
        }
    }
}

/// The keys each object was asked for, by the object's path. A class: one ledger is shared
/// by every container of one decoding, which runs on one thread and never escapes.
private final class KeyLedger {
    /// By the object's path as components (a key may itself contain a dot).
    var asked: [[String]: Set<String>] = [:]
    var readWhole: Set<[String]> = []

    func note(_ key: String, at path: [String]) { asked[path, default: []].insert(key) }
    func noteWhole(_ path: [String]) { readWhole.insert(path) }

    func firstUnknown(in value: JSONValue, path: [String]) -> StrictDecoder.Failure? {
        switch value {
        case .object(let o):
            let whole = readWhole.contains(path)
            let known = asked[path] ?? []
            for key in o.keys.sorted() {
                if !whole && !known.contains(key) {
                    return .unknownKey(path: (path + [key]).joined(separator: "."), known: known.sorted())
                }
                if let deeper = firstUnknown(in: o[key] ?? .null, path: path + [key]) { return deeper }
            }
            return nil
        case .array(let a):
            for (i, element) in a.enumerated() {
                if let deeper = firstUnknown(in: element, path: path + [String(i)]) { return deeper }
            }
            return nil
        default:
            return nil
        }
    }
}

/// Types that read `null` themselves (an `Optional` decoded with `decode(T?.self, forKey:)`).
private protocol NullAccepting {}
extension Optional: NullAccepting {}

private struct PathKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue; intValue = nil }
    init(intValue: Int) { stringValue = String(intValue); self.intValue = intValue }
}

private struct ValueDecoder: Decoder {
    let value: JSONValue
    let path: [String]
    let ledger: KeyLedger
    var codingPath: [any CodingKey] { path.map { PathKey(stringValue: $0) } }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let o) = value else {
            throw DecodingError.typeMismatch([String: Any].self, .init(codingPath: codingPath, debugDescription: "expected an object"))
        }
        return KeyedDecodingContainer(Keyed<Key>(object: o, path: path, ledger: ledger))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let a) = value else {
            throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "expected an array"))
        }
        return Unkeyed(array: a, path: path, ledger: ledger)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(decoder: self) }

    /// A primitive from this value, with JSON's rules: integers must be whole and in range.
    func primitive<T: Decodable>(_ type: T.Type) throws -> T {
        func mismatch(_ why: String) -> DecodingError { .typeMismatch(T.self, .init(codingPath: codingPath, debugDescription: why)) }
        switch T.self {
        case is String.Type:
            guard case .string(let s) = value, let v = s as? T else { throw mismatch("expected a string") }
            return v
        case is Bool.Type:
            guard case .bool(let b) = value, let v = b as? T else { throw mismatch("expected true or false") }
            return v
        case is Double.Type:
            guard case .number(let n) = value, let v = n as? T else { throw mismatch("expected a number") }
            return v
        case is Float.Type:
            guard case .number(let n) = value, let v = Float(n) as? T else { throw mismatch("expected a number") }
            return v
        default:
            guard let integer = T.self as? any FixedWidthInteger.Type else {
                return try T(from: self)
            }
            // JSON numbers arrive as doubles: beyond 2^53 an integer may already have been
            // rounded, so it is refused rather than taken for another.
            guard case .number(let n) = value, n.isFinite, n == n.rounded(), abs(n) < 9_007_199_254_740_992,
                  let v = integer.init(exactly: n) as? T else {
                throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "expected an integer from \(integer.min) to \(integer.max)"))
            }
            return v
        }
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        switch T.self {
        case is String.Type, is Bool.Type, is Double.Type, is Float.Type, is any FixedWidthInteger.Type: try primitive(T.self)
        default: try T(from: self)
        }
    }
}

private struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: [String: JSONValue]
    let path: [String]
    let ledger: KeyLedger
    var codingPath: [any CodingKey] { path.map { PathKey(stringValue: $0) } }

    var allKeys: [Key] {
        ledger.noteWhole(path)
        return object.keys.compactMap { Key(stringValue: $0) }
    }

    func contains(_ key: Key) -> Bool {
        ledger.note(key.stringValue, at: path)
        return object[key.stringValue] != nil
    }

    private func child(_ key: Key) throws -> ValueDecoder {
        ledger.note(key.stringValue, at: path)
        guard let v = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        return ValueDecoder(value: v, path: path + [key.stringValue], ledger: ledger)
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        ledger.note(key.stringValue, at: path)
        return object[key.stringValue] == nil || object[key.stringValue] == .null
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        let d = try child(key)
        if d.value == .null, !(T.self is JSONValue.Type), !(T.self is any NullAccepting.Type) {
            throw DecodingError.valueNotFound(T.self, .init(codingPath: d.codingPath, debugDescription: "null"))
        }
        return try d.decode(T.self)
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try child(key).primitive(Bool.self) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try child(key).primitive(String.self) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try child(key).primitive(Double.self) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try child(key).primitive(Float.self) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try child(key).primitive(Int.self) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try child(key).primitive(Int8.self) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try child(key).primitive(Int16.self) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try child(key).primitive(Int32.self) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try child(key).primitive(Int64.self) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try child(key).primitive(UInt.self) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try child(key).primitive(UInt8.self) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try child(key).primitive(UInt16.self) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try child(key).primitive(UInt32.self) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try child(key).primitive(UInt64.self) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try child(key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try child(key).unkeyedContainer() }

    func superDecoder() throws -> any Decoder {
        ledger.note("super", at: path)
        return ValueDecoder(value: object["super"] ?? .null, path: path + ["super"], ledger: ledger)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        ledger.note(key.stringValue, at: path)
        return ValueDecoder(value: object[key.stringValue] ?? .null, path: path + [key.stringValue], ledger: ledger)
    }
}

private struct Unkeyed: UnkeyedDecodingContainer {
    let array: [JSONValue]
    let path: [String]
    let ledger: KeyLedger
    var currentIndex = 0
    var codingPath: [any CodingKey] { path.map { PathKey(stringValue: $0) } }
    var count: Int? { array.count }
    var isAtEnd: Bool { currentIndex >= array.count }

    init(array: [JSONValue], path: [String], ledger: KeyLedger) { self.array = array; self.path = path; self.ledger = ledger }

    private mutating func next() throws -> ValueDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "the array has only \(array.count) elements"))
        }
        defer { currentIndex += 1 }
        return ValueDecoder(value: array[currentIndex], path: path + [String(currentIndex)], ledger: ledger)
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        if array[currentIndex] == .null { currentIndex += 1; return true }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decode(T.self) }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try next().primitive(Bool.self) }
    mutating func decode(_ type: String.Type) throws -> String { try next().primitive(String.self) }
    mutating func decode(_ type: Double.Type) throws -> Double { try next().primitive(Double.self) }
    mutating func decode(_ type: Float.Type) throws -> Float { try next().primitive(Float.self) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next().primitive(Int.self) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next().primitive(Int8.self) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next().primitive(Int16.self) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next().primitive(Int32.self) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next().primitive(Int64.self) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next().primitive(UInt.self) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next().primitive(UInt8.self) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next().primitive(UInt16.self) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next().primitive(UInt32.self) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next().primitive(UInt64.self) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { try next() }
}

private struct Single: SingleValueDecodingContainer {
    let decoder: ValueDecoder
    var codingPath: [any CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool { decoder.value == .null }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decode(T.self) }
    func decode(_ type: Bool.Type) throws -> Bool { try decoder.primitive(Bool.self) }
    func decode(_ type: String.Type) throws -> String { try decoder.primitive(String.self) }
    func decode(_ type: Double.Type) throws -> Double { try decoder.primitive(Double.self) }
    func decode(_ type: Float.Type) throws -> Float { try decoder.primitive(Float.self) }
    func decode(_ type: Int.Type) throws -> Int { try decoder.primitive(Int.self) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decoder.primitive(Int8.self) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decoder.primitive(Int16.self) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decoder.primitive(Int32.self) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decoder.primitive(Int64.self) }
    func decode(_ type: UInt.Type) throws -> UInt { try decoder.primitive(UInt.self) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decoder.primitive(UInt8.self) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decoder.primitive(UInt16.self) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decoder.primitive(UInt32.self) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decoder.primitive(UInt64.self) }
}
