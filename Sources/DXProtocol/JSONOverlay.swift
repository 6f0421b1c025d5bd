import Foundation

/// Settings files that name only what differs from a default (an exam protocol, a simulated
/// patient): the default encoded to JSON, the file's fields laid over it (objects merged field
/// by field, list elements over the default's element at the same place), decoded again, so
/// any field left out keeps its default and any field given is checked by the decoder.
public enum JSONOverlay {
    public static func decode<T: Codable>(_ type: T.Type, defaults: T, overlay: Any) throws -> T {
        let base = try JSONSerialization.jsonObject(with: JSONEncoder().encode(defaults))
        let merged = merge(base, overlay)
        // A number or a string laid over an object replaces it; Foundation traps (it does not
        // throw) when asked to write one at the top (found by fuzzing: `{"patient": 2.0}`).
        guard JSONSerialization.isValidJSONObject(merged) else { throw OverlayError(overlay: overlay) }
        return try JSONDecoder().decode(T.self, from: JSONSerialization.data(withJSONObject: merged))
    }

    /// The overlay is not an object (or a list) where the default is one.
    public struct OverlayError: Error, CustomStringConvertible {
        public var description: String
        init(overlay: Any) {
            let kind = overlay is String ? "a string" : overlay is NSNumber ? "a number" : overlay is NSNull ? "null" : "not a JSON object"
            description = "expected a JSON object with the fields to change, found \(kind)"
        }
    }

    static func merge(_ a: Any, _ b: Any) -> Any {
        if let a = a as? [String: Any], let b = b as? [String: Any] {
            var out = a
            for (k, v) in b { out[k] = a[k].map { merge($0, v) } ?? v }
            return out
        }
        if let a = a as? [Any], let b = b as? [Any] {
            return b.enumerated().map { i, v in a.isEmpty ? v : merge(a[min(i, a.count - 1)], v) }
        }
        return b
    }
}
