/// Command opcodes, ICD §3.
public enum Opcode: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    case getInfo = 0x0001
    case getStatus = 0x0002
    case heartbeat = 0x0003
    case home = 0x0010
    case move = 0x0011
    case configureScan = 0x0020
    case startScan = 0x0021
    case abortScan = 0x0022
    case xrayOff = 0x0023
    case selfTest = 0x0030
    case readSensors = 0x0031
    case getLog = 0x0032
    case setTime = 0x0033
    case reset = 0x0034
    case clearFault = 0x0035

    public var description: String {
        switch self {
        case .getInfo: "GET_INFO"
        case .getStatus: "GET_STATUS"
        case .heartbeat: "HEARTBEAT"
        case .home: "HOME"
        case .move: "MOVE"
        case .configureScan: "CONFIGURE_SCAN"
        case .startScan: "START_SCAN"
        case .abortScan: "ABORT_SCAN"
        case .xrayOff: "XRAY_OFF"
        case .selfTest: "SELF_TEST"
        case .readSensors: "READ_SENSORS"
        case .getLog: "GET_LOG"
        case .setTime: "SET_TIME"
        case .reset: "RESET"
        case .clearFault: "CLEAR_FAULT"
        }
    }
}

/// CONFIGURE_SCAN's parameters, ICD §3.
public struct ScanConfiguration: Sendable, Equatable, Codable {
    public var scanID: UInt32
    public var mode: ScanMode
    public var xUm: Int32
    public var yStartUm: Int32
    public var lineCount: UInt32
    public var lineStepUm: Int32
    public var linePeriodUs: UInt32
    public var tubeCurrentUA: UInt32
    public var linesPerFrame: UInt16

    public init(scanID: UInt32, mode: ScanMode, xUm: Int32, yStartUm: Int32, lineCount: UInt32,
                lineStepUm: Int32, linePeriodUs: UInt32, tubeCurrentUA: UInt32, linesPerFrame: UInt16) {
        self.scanID = scanID
        self.mode = mode
        self.xUm = xUm
        self.yStartUm = yStartUm
        self.lineCount = lineCount
        self.lineStepUm = lineStepUm
        self.linePeriodUs = linePeriodUs
        self.tubeCurrentUA = tubeCurrentUA
        self.linesPerFrame = linesPerFrame
    }

    /// y of line `i` (0-based), in 64 bits so that no input can overflow it.
    public func yUm(ofLine i: Int64) -> Int64 { Int64(yStartUm) + i * Int64(lineStepUm) }

    /// Planned exposure: lines × period.
    public var durationUs: UInt64 { UInt64(lineCount) * UInt64(linePeriodUs) }

    /// The ICD's BAD_PARAMS rules for CONFIGURE_SCAN, checked against the device's limits.
    /// Returns the first rule broken, in words a service engineer can act on.
    public func violation(for info: DeviceInfo) -> String? {
        if scanID == 0 { return "scan_id must not be 0" }
        if lineCount == 0 { return "line_count must not be 0" }
        if linesPerFrame == 0 || linesPerFrame > 64 { return "lines_per_frame must be 1 to 64" }
        let minPeriod = info.minLinePeriodUs
        if UInt64(linePeriodUs) < minPeriod { return "line_period_us must be at least \(minPeriod) (max line rate \(info.maxLineRateHz) Hz)" }
        if tubeCurrentUA > 3000 { return "tube_current_ua must be at most 3000" }
        if durationUs > 600_000_000 { return "line_count × line_period_us must not exceed 600 s" }
        if xUm < 0 || Int64(xUm) > Int64(info.travelXUm) { return "x_um \(xUm) is outside the travel 0…\(info.travelXUm)" }
        let first = yUm(ofLine: 0)
        let last = yUm(ofLine: Int64(lineCount) - 1)
        if min(first, last) < 0 || max(first, last) > Int64(info.travelYUm) {
            return "lines from y \(first) to \(last) µm fall outside the travel 0…\(info.travelYUm)"
        }
        return nil
    }
}

/// A host-to-device command, ICD §3.
public enum Command: Sendable, Equatable {
    case getInfo
    case getStatus
    case heartbeat
    case home
    case move(xUm: Int32, yUm: Int32, armAngle: Int16)
    case configureScan(ScanConfiguration)
    case startScan(scanID: UInt32)
    case abortScan(scanID: UInt32)
    case xrayOff
    case selfTest
    case readSensors
    case getLog(offset: UInt32, maxBytes: UInt16)
    case setTime(unixUs: UInt64)
    case reset
    case clearFault

    public var opcode: Opcode {
        switch self {
        case .getInfo: .getInfo
        case .getStatus: .getStatus
        case .heartbeat: .heartbeat
        case .home: .home
        case .move: .move
        case .configureScan: .configureScan
        case .startScan: .startScan
        case .abortScan: .abortScan
        case .xrayOff: .xrayOff
        case .selfTest: .selfTest
        case .readSensors: .readSensors
        case .getLog: .getLog
        case .setTime: .setTime
        case .reset: .reset
        case .clearFault: .clearFault
        }
    }

    public var payload: [UInt8] {
        var w = WireWriter()
        w.u16(opcode.rawValue)
        switch self {
        case .getInfo, .getStatus, .heartbeat, .home, .xrayOff, .selfTest, .readSensors, .reset, .clearFault:
            break
        case let .move(x, y, a):
            w.i32(x); w.i32(y); w.i16(a)
        case let .configureScan(c):
            w.u32(c.scanID); w.u8(c.mode.rawValue); w.i32(c.xUm); w.i32(c.yStartUm)
            w.u32(c.lineCount); w.i32(c.lineStepUm); w.u32(c.linePeriodUs)
            w.u32(c.tubeCurrentUA); w.u16(c.linesPerFrame)
        case let .startScan(id), let .abortScan(id):
            w.u32(id)
        case let .getLog(offset, maxBytes):
            w.u32(offset); w.u16(maxBytes)
        case let .setTime(t):
            w.u64(t)
        }
        return w.bytes
    }

    /// Why a command payload could not be taken (the device answers with the status).
    public enum DecodeError: Error, Equatable, Sendable {
        case unknownOpcode(UInt16)
        case malformed(Opcode, WireError)
        /// A parameter holds a value the ICD does not define (answered BAD_PARAMS).
        case badParams(Opcode, String)

        public var status: CommandStatus {
            switch self {
            case .unknownOpcode: .unknownOpcode
            case .malformed: .malformed
            case .badParams: .badParams
            }
        }
    }

    /// The opcode of a command payload, if it has one (used to echo it in a response).
    public static func opcodeField(of payload: [UInt8]) -> UInt16? {
        guard payload.count >= 2 else { return nil }
        return UInt16(payload[0]) | UInt16(payload[1]) << 8
    }

    public init(payload: [UInt8]) throws(DecodeError) {
        var r = WireReader(payload)
        guard let raw = try? r.u16("opcode") else { throw .unknownOpcode(0) }
        guard let op = Opcode(rawValue: raw) else { throw .unknownOpcode(raw) }
        do {
            switch op {
            case .getInfo: self = .getInfo
            case .getStatus: self = .getStatus
            case .heartbeat: self = .heartbeat
            case .home: self = .home
            case .xrayOff: self = .xrayOff
            case .selfTest: self = .selfTest
            case .readSensors: self = .readSensors
            case .reset: self = .reset
            case .clearFault: self = .clearFault
            case .move:
                self = .move(xUm: try r.i32("x_um"), yUm: try r.i32("y_um"), armAngle: try r.i16("arm_angle"))
            case .configureScan:
                let id = try r.u32("scan_id")
                let modeRaw = try r.u8("mode")
                let x = try r.i32("x_um"), y = try r.i32("y_start_um"), n = try r.u32("line_count")
                let step = try r.i32("line_step_um"), period = try r.u32("line_period_us")
                let current = try r.u32("tube_current_ua"), lpf = try r.u16("lines_per_frame")
                try r.finish()
                guard let mode = ScanMode(rawValue: modeRaw) else { throw DecodeError.badParams(op, "mode \(modeRaw) is not 0, 1 or 2") }
                self = .configureScan(ScanConfiguration(
                    scanID: id, mode: mode, xUm: x, yStartUm: y, lineCount: n, lineStepUm: step,
                    linePeriodUs: period, tubeCurrentUA: current, linesPerFrame: lpf))
            case .startScan: self = .startScan(scanID: try r.u32("scan_id"))
            case .abortScan: self = .abortScan(scanID: try r.u32("scan_id"))
            case .getLog: self = .getLog(offset: try r.u32("offset"), maxBytes: try r.u16("max_bytes"))
            case .setTime: self = .setTime(unixUs: try r.u64("unix_us"))
            }
            try r.finish()
        } catch let e as WireError {
            throw .malformed(op, e)
        } catch let e as DecodeError {
            throw e
        } catch {
            throw .malformed(op, .truncated(field: "?"))
        }
    }
}
