import Foundation

/// JSON-RPC 2.0 error object.
public struct RPCError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: JSONValue?

    public init(code: Int, message: String, data: JSONValue? = nil) {
        self.code = code; self.message = message; self.data = data
    }

    public var description: String { message }

    // JSON-RPC 2.0's own codes.
    public static let parseErrorCode = -32700
    public static let invalidRequestCode = -32600
    public static let methodNotFoundCode = -32601
    public static let invalidParamsCode = -32602
    public static let internalErrorCode = -32603
    // The daemon's codes (documented in docs/control-protocol.md).
    public static let deviceErrorCode = -32000
    public static let notConnectedCode = -32001
    public static let busyCode = -32002
    public static let interlockCode = -32003
    public static let scanFailedCode = -32004
    public static let forbiddenCode = -32005
    public static let notCalibratedCode = -32006
    public static let examStateCode = -32007
    public static let notReadyCode = -32008
    /// Patient exams are locked by quality control (a failed QC, or none today under the
    /// `block` policy); the message names QC and what lifts it.
    public static let qcLockedCode = -32009
    /// The daemon cannot write what the request needs: the capture disk is full, the exam
    /// database is read-only or locked. Refused before anything is exposed, or (during a scan)
    /// the scan was stopped with X-rays off; the message says which.
    public static let storageCode = -32010

    public static func parseError(_ why: String) -> RPCError { RPCError(code: parseErrorCode, message: "parse error: \(why)") }
    public static func invalidRequest(_ why: String) -> RPCError { RPCError(code: invalidRequestCode, message: "invalid request: \(why)") }
    public static func methodNotFound(_ m: String) -> RPCError { RPCError(code: methodNotFoundCode, message: "unknown method '\(m)'") }
    public static func invalidParams(_ why: String) -> RPCError { RPCError(code: invalidParamsCode, message: "invalid params: \(why)") }
}

/// A request id: a number or a string (JSON-RPC 2.0).
public enum RPCID: Sendable, Hashable, Codable, CustomStringConvertible {
    case number(Int)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) { self = .number(n) }
        else { self = .string(try c.decode(String.self)) }
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        }
    }
    public var description: String {
        switch self { case .number(let n): "\(n)"; case .string(let s): s }
    }
}

/// One incoming request or notification.
public struct RPCRequest: Sendable, Equatable {
    public var id: RPCID?
    public var method: String
    public var params: JSONValue?

    public init(id: RPCID?, method: String, params: JSONValue?) { self.id = id; self.method = method; self.params = params }

    /// Reads one line. Returns the error to answer with (and the id if one could be read).
    public static func parse(_ line: [UInt8]) -> Result<RPCRequest, RPCFailure> {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(line)) else {
            return .failure(RPCFailure(id: nil, error: .parseError("the line is not valid JSON")))
        }
        guard case .object(let o) = value else {
            return .failure(RPCFailure(id: nil, error: .invalidRequest("expected a JSON object")))
        }
        var id: RPCID?
        switch o["id"] {
        case nil, .null?: id = nil
        case .number(let n)?:
            guard n.isFinite, n == n.rounded(), abs(n) < 1e15 else { return .failure(RPCFailure(id: nil, error: .invalidRequest("id must be an integer or a string"))) }
            id = .number(Int(n))
        case .string(let s)?: id = .string(s)
        default: return .failure(RPCFailure(id: nil, error: .invalidRequest("id must be an integer or a string")))
        }
        guard o["jsonrpc"] == .string("2.0") else { return .failure(RPCFailure(id: id, error: .invalidRequest("jsonrpc must be \"2.0\""))) }
        guard case .string(let method)? = o["method"], !method.isEmpty else {
            return .failure(RPCFailure(id: id, error: .invalidRequest("method must be a non-empty string")))
        }
        let params = o["params"]
        if let params, params != .null {
            switch params {
            case .object, .array: break
            default: return .failure(RPCFailure(id: id, error: .invalidRequest("params must be an object or an array")))
            }
        }
        return .success(RPCRequest(id: id, method: method, params: params == .null ? nil : params))
    }

    public func encoded() -> [UInt8] {
        var o: [String: JSONValue] = ["jsonrpc": .string("2.0"), "method": .string(method)]
        if let id { o["id"] = id.json }
        if let params { o["params"] = params }
        return RPCLine.encode(.object(o))
    }
}

public struct RPCFailure: Error, Sendable {
    public var id: RPCID?
    public var error: RPCError
}

extension RPCID {
    var json: JSONValue {
        switch self { case .number(let n): .number(Double(n)); case .string(let s): .string(s) }
    }
}

/// An incoming message on the client side: a response or a notification.
public enum RPCMessage: Sendable, Equatable {
    case response(id: RPCID?, result: Result<JSONValue, RPCError>)
    case notification(method: String, params: JSONValue?)

    public static func parse(_ line: [UInt8]) -> RPCMessage? {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(line)), case .object(let o) = value else { return nil }
        if case .string(let m)? = o["method"], o["id"] == nil || o["id"] == .null {
            return .notification(method: m, params: o["params"])
        }
        var id: RPCID?
        // An id that is no integer we could have sent (too large, fractional) matches no
        // request; found by fuzzing: 5e95 as an id trapped the client converting it.
        if case .number(let n)? = o["id"], let exact = Int(exactly: n) { id = .number(exact) }
        if case .string(let s)? = o["id"] { id = .string(s) }
        if let e = o["error"], let err = try? e.decode(RPCError.self) { return .response(id: id, result: .failure(err)) }
        return .response(id: id, result: .success(o["result"] ?? .null))
    }
}

/// Newline-delimited JSON, one object per line.
public enum RPCLine {
    /// Longest request line the daemon reads; a longer one closes that connection.
    public static let maxLength = 1 << 20

    public static func encode(_ v: JSONValue) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var bytes = (try? Array(encoder.encode(v))) ?? Array("null".utf8)
        bytes.append(0x0A)
        return bytes
    }

    public static func response(id: RPCID?, result: JSONValue) -> [UInt8] {
        encode(.object(["jsonrpc": .string("2.0"), "id": id?.json ?? .null, "result": result]))
    }

    public static func error(id: RPCID?, _ e: RPCError) -> [UInt8] {
        var err: [String: JSONValue] = ["code": .number(Double(e.code)), "message": .string(e.message)]
        if let d = e.data { err["data"] = d }
        return encode(.object(["jsonrpc": .string("2.0"), "id": id?.json ?? .null, "error": .object(err)]))
    }

    public static func notification(_ method: String, _ params: JSONValue) -> [UInt8] {
        encode(.object(["jsonrpc": .string("2.0"), "method": .string(method), "params": params]))
    }
}
