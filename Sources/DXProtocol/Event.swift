/// A device event, ICD §5.
public enum Event: Sendable, Equatable {
    case stateChanged(old: DeviceState, new: DeviceState)
    case motionDone(xUm: Int32, yUm: Int32, armAngle: Int16)
    case scanStarted(scanID: UInt32, deviceTimeUs: UInt64)
    case scanComplete(scanID: UInt32, lines: UInt32, exposureMs: UInt32, dapX1000: UInt32)
    case scanAborted(scanID: UInt32, reason: AbortReason, linesSent: UInt32)
    case interlocksChanged(Interlocks)
    case fault(code: FaultCode, message: String)
    case watchdogExpired
    case faultCleared(code: FaultCode)

    public enum Code: UInt16, Sendable, CaseIterable {
        case stateChanged = 0x0101
        case motionDone = 0x0102
        case scanStarted = 0x0103
        case scanComplete = 0x0104
        case scanAborted = 0x0105
        case interlocksChanged = 0x0106
        case fault = 0x0107
        case watchdogExpired = 0x0108
        case faultCleared = 0x0109
    }

    public var code: Code {
        switch self {
        case .stateChanged: .stateChanged
        case .motionDone: .motionDone
        case .scanStarted: .scanStarted
        case .scanComplete: .scanComplete
        case .scanAborted: .scanAborted
        case .interlocksChanged: .interlocksChanged
        case .fault: .fault
        case .watchdogExpired: .watchdogExpired
        case .faultCleared: .faultCleared
        }
    }

    public var payload: [UInt8] {
        var w = WireWriter()
        w.u16(code.rawValue)
        switch self {
        case let .stateChanged(o, n): w.u8(o.rawValue); w.u8(n.rawValue)
        case let .motionDone(x, y, a): w.i32(x); w.i32(y); w.i16(a)
        case let .scanStarted(id, t): w.u32(id); w.u64(t)
        case let .scanComplete(id, l, e, d): w.u32(id); w.u32(l); w.u32(e); w.u32(d)
        case let .scanAborted(id, r, l): w.u32(id); w.u16(r.rawValue); w.u32(l)
        case let .interlocksChanged(i): w.u16(i.rawValue)
        case let .fault(c, m): w.u16(c.rawValue); w.str(m)
        case .watchdogExpired: break
        case let .faultCleared(c): w.u16(c.rawValue)
        }
        return w.bytes
    }

    public init(payload: [UInt8]) throws(WireError) {
        var r = WireReader(payload)
        let raw = try r.u16("code")
        guard let code = Code(rawValue: raw) else { throw .invalidValue(field: "event code", value: Int64(raw)) }
        func state(_ f: String) throws(WireError) -> DeviceState {
            let v = try r.u8(f)
            guard let s = DeviceState(rawValue: v) else { throw .invalidValue(field: f, value: Int64(v)) }
            return s
        }
        switch code {
        case .stateChanged:
            let o = try state("old")
            self = .stateChanged(old: o, new: try state("new"))
        case .motionDone: self = .motionDone(xUm: try r.i32("x_um"), yUm: try r.i32("y_um"), armAngle: try r.i16("arm_angle"))
        case .scanStarted: self = .scanStarted(scanID: try r.u32("scan_id"), deviceTimeUs: try r.u64("device_time_us"))
        case .scanComplete:
            self = .scanComplete(scanID: try r.u32("scan_id"), lines: try r.u32("lines"),
                                 exposureMs: try r.u32("exposure_ms"), dapX1000: try r.u32("dap_x1000"))
        case .scanAborted:
            self = .scanAborted(scanID: try r.u32("scan_id"), reason: AbortReason(rawValue: try r.u16("reason")),
                                linesSent: try r.u32("lines_sent"))
        case .interlocksChanged: self = .interlocksChanged(Interlocks(rawValue: try r.u16("interlocks")))
        case .fault: self = .fault(code: FaultCode(rawValue: try r.u16("code")), message: try r.str("message"))
        case .watchdogExpired: self = .watchdogExpired
        case .faultCleared: self = .faultCleared(code: FaultCode(rawValue: try r.u16("code")))
        }
        try r.finish()
    }
}
