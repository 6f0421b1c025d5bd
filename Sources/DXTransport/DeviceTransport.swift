import DXProtocol

/// Bytes that arrived from the device on one IN endpoint (0x81 or 0x82).
public struct TransportChunk: Sendable, Equatable {
    public var endpoint: Endpoint
    public var bytes: [UInt8]
    public init(endpoint: Endpoint, bytes: [UInt8]) { self.endpoint = endpoint; self.bytes = bytes }
}

/// Why the link to the device failed.
public enum TransportError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The device left (unplugged, reset, simulator gone).
    case disconnected(String)
    /// The transport was used before `open()` or after `close()`.
    case notOpen
    /// The device could not be reached at all.
    case unreachable(String)
    /// A transfer did not complete in time.
    case timeout(Endpoint)
    /// The endpoint is halted.
    case stall(Endpoint)
    /// The device sent more than the transfer could hold.
    case overflow(Endpoint)
    case io(String)

    public var description: String {
        switch self {
        case .disconnected(let why): "device disconnected: \(why)"
        case .notOpen: "device link is not open"
        case .unreachable(let why): "device not reachable: \(why)"
        case .timeout(let ep): "transfer timed out on endpoint 0x\(String(ep.rawValue, radix: 16))"
        case .stall(let ep): "endpoint 0x\(String(ep.rawValue, radix: 16)) stalled"
        case .overflow(let ep): "transfer overflow on endpoint 0x\(String(ep.rawValue, radix: 16))"
        case .io(let why): "I/O error: \(why)"
        }
    }
}

/// The seam between the host and whatever carries its bytes to a DX-1: USB, a socket to a
/// `dexa-sim` process, an in-process simulator, or a capture file being replayed. Nothing
/// above this protocol can tell which (STYLE.md, lesson 1).
///
/// Each endpoint is a byte stream (ICD §1): a chunk may hold part of a frame or several.
public protocol DeviceTransport: Sendable {
    /// What this link is, for logs and `device.info` (e.g. `sim:/run/dexa-sim.sock`).
    var name: String { get }

    /// Opens the link. The stream yields what the device sends, in order per endpoint, and
    /// ends (throwing `TransportError.disconnected`) when the device leaves. One consumer.
    func open() async throws -> AsyncThrowingStream<TransportChunk, any Error>

    /// Writes bytes to the command endpoint (0x01).
    func send(_ bytes: [UInt8]) async throws

    /// Closes the link; the incoming stream finishes. Safe to call more than once.
    func close() async
}
