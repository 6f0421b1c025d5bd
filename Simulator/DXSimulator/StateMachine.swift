import DXProtocol

/// The DX-1's rules as a pure value (ICD §3 commands and the states they need, §4 states,
/// interlocks, faults, the watchdog): what each command and each happening changes, and what
/// the unit then does, in order. No clock, no link, no tasks: `DX1Firmware` keeps the timers
/// (motion, a scan's lines, boot, the watchdog) and the I/O, and carries out the effects;
/// tests drive this value directly.
public struct DX1StateMachine: Sendable, Equatable {
    public struct Position: Sendable, Equatable {
        public var xUm: Int32
        public var yUm: Int32
        public var armX10: Int16
        public init(xUm: Int32, yUm: Int32, armX10: Int16) { self.xUm = xUm; self.yUm = yUm; self.armX10 = armX10 }
    }

    /// What the unit does as a consequence, in order.
    public enum Effect: Sendable, Equatable {
        case event(Event)
        /// X-rays switched; the scan they belonged to, if any (for the firmware's records).
        case xray(on: Bool, scanID: UInt32?)
        case startMotion(to: Position, seconds: Double)
        case cancelMotion
        case startScan(ScanConfiguration)
        case cancelScan
        /// SCAN_STARTED, stamped with the device's time when sent.
        case announceScanStarted(UInt32)
        /// SCAN_ABORTED, with the lines the firmware has sent of the scan.
        case announceScanAborted(UInt32, AbortReason)
        /// Leave the bus and boot again (after RESET's response).
        case reset
        case log(String)
    }

    /// What a command's result carries (the firmware encodes it: it needs its sensors, log
    /// and detector).
    public enum Reply: Sendable, Equatable {
        case none, info, status, selfTest, sensors
        case log(offset: UInt32, maxBytes: UInt16)
    }

    public struct Decision: Sendable, Equatable {
        public var status: CommandStatus
        public var reply: Reply
        /// Before the response goes out (the events of a state change the command made).
        public var effects: [Effect]
        /// After the response (ICD §3: the events a command announces follow its OK).
        public var afterResponse: [Effect]

        init(_ status: CommandStatus, _ reply: Reply = .none, _ effects: [Effect] = [], after: [Effect] = []) {
            self.status = status; self.reply = reply; self.effects = effects; afterResponse = after
        }
    }

    public let info: DeviceInfo
    public private(set) var state: DeviceState = .boot
    public private(set) var interlocks: Interlocks = .allClosed
    public private(set) var xrayOn = false
    public private(set) var position = Position(xUm: 0, yUm: 0, armX10: 0)
    public private(set) var fault: FaultCode = .none
    public private(set) var configured: ScanConfiguration?
    public private(set) var activeScan: ScanConfiguration?

    public init(info: DeviceInfo) { self.info = info }

    /// The status for a command the current state does not allow (ICD §3).
    var refusal: CommandStatus {
        switch state {
        case .fault: .faultActive
        case .safe: .interlockOpen
        case .moving, .scanning, .boot: .busy
        default: .badState
        }
    }

    // MARK: - Commands

    public mutating func handle(_ command: Command) -> Decision {
        switch command {
        case .getInfo: return Decision(.ok, .info)
        case .getStatus: return Decision(.ok, .status)
        case .heartbeat: return Decision(.ok)
        case .home:
            guard state == .idle else { return Decision(refusal) }
            return Decision(.ok, .none, startMotion(to: Position(xUm: 0, yUm: 0, armX10: 0)))
        case let .move(tx, ty, ta):
            guard state == .idle else { return Decision(refusal) }
            guard tx >= 0, Int64(tx) <= Int64(info.travelXUm), ty >= 0, Int64(ty) <= Int64(info.travelYUm),
                  ICDMotion.armRangeX10.contains(ta) else { return Decision(.badParams) }
            return Decision(.ok, .none, startMotion(to: Position(xUm: tx, yUm: ty, armX10: ta)))
        case let .configureScan(c):
            guard state == .idle else { return Decision(refusal) }
            if let why = c.violation(for: info) { return Decision(.badParams, .none, [.log("CONFIGURE_SCAN refused: \(why)")]) }
            configured = c
            return Decision(.ok, .none, setState(.ready))
        case let .startScan(id):
            if state == .safe || interlocks != .allClosed { return Decision(.interlockOpen) }
            guard state == .ready, let c = configured else { return Decision(refusal) }
            guard c.scanID == id else { return Decision(.badParams) }
            configured = nil
            activeScan = c
            var effects = setState(.scanning)
            if c.mode != .dark { effects += setXray(true) }
            effects.append(.startScan(c))
            return Decision(.ok, .none, effects, after: [.announceScanStarted(c.scanID)])
        case let .abortScan(id):
            guard state == .ready || state == .scanning else { return Decision(refusal) }
            guard (activeScan?.scanID ?? configured?.scanID) == id else { return Decision(.badParams) }
            if state == .ready {
                configured = nil
                return Decision(.ok, .none, setState(.idle))
            }
            return Decision(.ok, .none, endScan(.host))
        case .xrayOff:
            return Decision(.ok, .none, state == .scanning ? endScan(.xrayOff) : setXray(false))
        case .selfTest:
            guard state == .idle else { return Decision(refusal) }
            return Decision(.ok, .selfTest)
        case .readSensors: return Decision(.ok, .sensors)
        case let .getLog(offset, maxBytes): return Decision(.ok, .log(offset: offset, maxBytes: maxBytes))
        case let .setTime(t): return Decision(.ok, .none, [.log("time set to \(t) µs since 1970")])
        case .reset:
            guard [.idle, .fault, .safe].contains(state) else { return Decision(refusal) }
            return Decision(.ok, .none, after: [.log("RESET requested by host"), .reset])
        case .clearFault:
            guard state == .fault else { return Decision(refusal) }
            let code = fault
            fault = .none
            return Decision(.ok, .none, after: [.log("fault \(code.rawValue) cleared"), .event(.faultCleared(code: code))]
                                + setState(interlocks == .allClosed ? .idle : .safe))
        }
    }

    // MARK: - Happenings

    /// Power-on or RESET: BOOT, nothing configured, X-rays off.
    public mutating func reboot() -> [Effect] {
        var effects = setXray(false)
        configured = nil
        activeScan = nil
        state = .boot
        fault = .none
        effects.append(.cancelMotion)
        effects.append(.cancelScan)
        return effects
    }

    /// The boot has finished: IDLE, or SAFE with an interlock open. `announce` false when the
    /// unit re-enumerates (the host learns the state from GET_STATUS).
    public mutating func booted(announce: Bool = true) -> [Effect] {
        guard state == .boot else { return [] }
        let next: DeviceState = interlocks == .allClosed ? .idle : .safe
        guard announce else { state = next; return [] }
        return setState(next)
    }

    /// The gantry reached its target (MOTION_DONE, then IDLE).
    public mutating func motionFinished(at target: Position) -> [Effect] {
        guard state == .moving else { return [] }
        position = target
        return [.event(.motionDone(xUm: target.xUm, yUm: target.yUm, armAngle: target.armX10))] + setState(.idle)
    }

    /// Where the carriage is while a scan's lines are read out.
    public mutating func carriage(xUm: Int32, yUm: Int32) {
        position.xUm = xUm
        position.yUm = yUm
    }

    /// The scan's last line is out: X-rays off, SCAN_COMPLETE with the dose, IDLE.
    public mutating func scanFinished(lines: UInt32, exposureMs: UInt32, dapX1000: UInt32) -> [Effect] {
        guard state == .scanning, let c = activeScan else { return [] }
        var effects = setXray(false)
        activeScan = nil
        effects.append(.log("scan \(c.scanID) complete: \(lines) lines, \(exposureMs) ms"))
        effects.append(.event(.scanComplete(scanID: c.scanID, lines: lines, exposureMs: exposureMs, dapX1000: dapX1000)))
        return effects + setState(.idle)
    }

    /// The watchdog ran out (ICD §4): X-rays off, WATCHDOG_EXPIRED, the scan aborted. The
    /// event comes first or after the abort, as the unit's freedom says.
    public mutating func watchdogExpired(eventFirst: Bool) -> [Effect] {
        var effects = setXray(false)
        if eventFirst { effects.append(.event(.watchdogExpired)) }
        if state == .scanning { effects += endScan(.watchdog) }
        if !eventFirst { effects.append(.event(.watchdogExpired)) }
        return effects
    }

    /// An interlock opened or closed. Opening is the hardware path: X-rays off first, then
    /// the host is told, then whatever ran stops and the unit is SAFE.
    public mutating func interlock(_ which: Interlocks, closed: Bool) -> [Effect] {
        let before = interlocks
        if closed { interlocks.insert(which) } else { interlocks.remove(which) }
        guard interlocks != before else { return [] }
        if closed {
            var effects: [Effect] = [.event(.interlocksChanged(interlocks))]
            if state == .safe && interlocks == .allClosed { effects += setState(.idle) }
            return effects
        }
        var effects = setXray(false) + [.event(.interlocksChanged(interlocks))]
        switch state {
        case .scanning: effects += endScan(.interlock, next: .safe)
        case .moving: effects += [.cancelMotion] + setState(.safe)
        case .idle, .ready:
            configured = nil
            effects += setState(.safe)
        default: break
        }
        return effects
    }

    /// A fault trips: X-rays off first, then FAULT with its cause, then the scan's abort.
    public mutating func trip(_ code: FaultCode, message: String) -> [Effect] {
        var effects = setXray(false)
        fault = code
        effects.append(.event(.fault(code: code, message: message)))
        if state == .scanning {
            effects += endScan(.fault, next: .fault)
        } else {
            effects.append(.cancelMotion)
            configured = nil
        }
        return effects + setState(.fault)
    }

    // MARK: - Steps

    private mutating func startMotion(to target: Position) -> [Effect] {
        let dx = abs(Double(target.xUm) - Double(position.xUm)) / ICDMotion.axisSpeedUmPerSecond
        let dy = abs(Double(target.yUm) - Double(position.yUm)) / ICDMotion.axisSpeedUmPerSecond
        let da = abs(Double(target.armX10) - Double(position.armX10)) / ICDMotion.armSpeedTenthsPerSecond
        return setState(.moving) + [.startMotion(to: target, seconds: max(dx, dy, da, 0.001))]
    }

    /// Ends the running scan early: X-rays off at once, then the events.
    private mutating func endScan(_ reason: AbortReason, next: DeviceState = .idle) -> [Effect] {
        guard let c = activeScan else { return setXray(false) }
        var effects = setXray(false)
        activeScan = nil
        effects += [.cancelScan, .log("scan \(c.scanID) aborted: \(reason)"), .announceScanAborted(c.scanID, reason)]
        return effects + setState(next)
    }

    private mutating func setXray(_ on: Bool) -> [Effect] {
        guard on != xrayOn else { return [] }
        xrayOn = on
        return [.xray(on: on, scanID: activeScan?.scanID)]
    }

    private mutating func setState(_ new: DeviceState) -> [Effect] {
        guard new != state else { return [] }
        let old = state
        state = new
        return [.event(.stateChanged(old: old, new: new))]
    }
}
