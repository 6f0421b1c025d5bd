import DXProtocol
import DXTransport

/// Why a request to the device failed, in words a technologist or service engineer can act on.
public enum DeviceError: Error, Equatable, Sendable, CustomStringConvertible {
    case notConnected
    case linkLost(String)
    case timeout(Opcode, milliseconds: Int)
    /// The device answered with a non-OK status.
    case refused(Opcode, CommandStatus, context: String)
    /// The response could not be read (MALFORMED from our side).
    case badResponse(Opcode, String)
    case wrongState(DeviceState, needed: String)

    public var description: String {
        switch self {
        case .notConnected: "the DX-1 is not connected"
        case .linkLost(let why): "lost the link to the DX-1: \(why)"
        case let .timeout(op, ms):
            ms > 0 ? "the DX-1 did not answer \(op) within \(ms) ms" : "the USB transfer carrying \(op) timed out"
        case let .refused(op, status, context):
            context.isEmpty ? "the DX-1 refused \(op): \(status)" : "the DX-1 refused \(op): \(status) (\(context))"
        case let .badResponse(op, why): "unreadable answer to \(op): \(why)"
        case let .wrongState(s, needed): "the DX-1 is \(s), needs \(needed)"
        }
    }
}
