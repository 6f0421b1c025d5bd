import DXProtocol

/// The faults a test or a service engineer can inject into the simulated DX-1 (STYLE.md,
/// lesson 3). Each is a plain value so the same request travels from a test, from the
/// `dexa-sim` control socket or from its standard input.
public enum InjectedFault: Sendable, Equatable {
    /// Open or close one interlock of the chain.
    case interlock(Interlocks, closed: Bool)
    /// Trip a device fault (ICD §4): X-rays off, scan aborted, state FAULT.
    case trip(FaultCode, message: String)
    /// Stop producing scan lines for this long (device time); the scan resumes afterwards.
    case stallData(Duration)
    /// Drop the next n data frames (their seqs are used, so the host sees a gap).
    case dropDataFrames(Int)
    /// Flip one bit in each of the next n frames sent on the endpoint.
    case corruptFrames(Endpoint, Int)
    /// Send n random bytes on the endpoint before its next frame.
    case garbage(Endpoint, Int)
    /// The firmware hangs: nothing is processed or sent; the hardware watchdog still acts.
    case freeze
    case thaw
    /// The USB cable is pulled (the device keeps power) or plugged back in.
    case unplug
    case plug
    /// Lines come slower than configured by this factor (1 = nominal).
    case lineRateFactor(Double)
    /// The self-test reports this component failed.
    case failSelfTest(SelfTestComponent)
    /// The tube's output changes by this fraction (a step; the air scan before each
    /// measurement cancels it, so the BMD must not move).
    case outputStep(Double)
    /// The spectrum moves by this much (added to earlier steps): the tube voltage or a window
    /// threshold, which moves the BMD (docs/qc.md).
    case spectrumStep(SpectralShift)
    /// The spectrum moves by this much per day of the device's clock, from now.
    case spectrumDrift(SpectralShift)
    /// Test speed only: the watchdog's wall-clock floor from now on (nil: the ICD's rule
    /// alone). A fault test lifts it while the host is dead or cut off, so that the watchdog
    /// acts on the device clock exactly as the ICD says, and restores it before the host speaks.
    case watchdogFloor(Duration?)
    /// Remove every injected fault that persists (stall, slow rate, freeze, self-test).
    case clearInjected
}

/// Parses the text form used on `dexa-sim`'s control socket and standard input, e.g.
/// `interlock door open`, `fault 2`, `stall 1500`, `drop 3`, `corrupt data 2`,
/// `garbage events 40`, `freeze`, `thaw`, `unplug`, `plug`, `rate 1.5`, `selftest-fail 3`.
public enum FaultCommand {
    public static let help = """
        interlock NAME open|close   NAME: door, estop, table, collimator, generator
        fault CODE [MESSAGE]        1 arc, 2 over-temperature, 3 motor stall, 4 HV, 5 detector, 6 overflow
        stall MS                    no scan lines for MS ms of device time
        drop N                      drop the next N data frames
        corrupt data|events N       flip a bit in the next N frames on that endpoint
        garbage data|events N       send N random bytes before the next frame
        freeze | thaw               hang the firmware / let it run again
        unplug | plug               pull / reinsert the USB cable
        rate FACTOR                 lines come FACTOR times slower
        selftest-fail COMPONENT     make the self-test fail that component (1-9)
        output PERCENT              the tube's output steps by PERCENT (the air scan cancels it)
        spectrum kvp|low|high KEV   the tube voltage or a window threshold steps by KEV (kV)
        spectrum-drift kvp|low|high KEV_PER_DAY   ... moves by KEV per day of device time
        phantom NAME|FILE           put on the table: empty, calibration, esp, bench, patient, an ICD
                                    phantom JSON or {"patient": {...}} (a simulated patient)
        watchdog-floor MS           test speed: the watchdog's wall-clock floor (0: none, the ICD's rule)
        speed FACTOR                test speed: the unit's clock runs FACTOR times real time from now
        clear                       remove persisting injected faults
        status                      the simulator's state as JSON
        """

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func parse(_ line: String) throws(ParseError) -> InjectedFault {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let verb = words.first?.lowercased() else { throw ParseError(description: "empty command") }
        func int(_ i: Int) throws(ParseError) -> Int {
            guard words.count > i, let v = Int(words[i]), v >= 0 else { throw ParseError(description: "\(verb): expected a non-negative number") }
            return v
        }
        func endpoint(_ i: Int) throws(ParseError) -> Endpoint {
            guard words.count > i else { throw ParseError(description: "\(verb): expected data or events") }
            switch words[i].lowercased() {
            case "data": return .dataIn
            case "events", "responses": return .responseIn
            default: throw ParseError(description: "\(verb): expected data or events, not \(words[i])")
            }
        }
        switch verb {
        case "interlock":
            guard words.count == 3 else { throw ParseError(description: "usage: interlock NAME open|close") }
            let which: Interlocks
            do { which = try Interlocks(name: words[1]) } catch { throw ParseError(description: error.description) }
            switch words[2].lowercased() {
            case "open": return .interlock(which, closed: false)
            case "close", "closed": return .interlock(which, closed: true)
            default: throw ParseError(description: "usage: interlock NAME open|close")
            }
        case "fault":
            let code = try int(1)
            guard code > 0, code <= Int(UInt16.max) else { throw ParseError(description: "fault: code must be 1…65535") }
            let fc = FaultCode(rawValue: UInt16(code))
            let message = words.count > 2 ? words[2...].joined(separator: " ") : fc.description
            return .trip(fc, message: message)
        case "stall": return .stallData(.milliseconds(try int(1)))
        case "drop": return .dropDataFrames(try int(1))
        case "corrupt": return .corruptFrames(try endpoint(1), try int(2))
        case "garbage": return .garbage(try endpoint(1), try int(2))
        case "freeze": return .freeze
        case "thaw": return .thaw
        case "unplug": return .unplug
        case "plug": return .plug
        case "rate":
            guard words.count > 1, let f = Double(words[1]), f.isFinite, f >= 0.1, f <= 100 else {
                throw ParseError(description: "rate: expected a factor between 0.1 and 100")
            }
            return .lineRateFactor(f)
        case "selftest-fail":
            let c = try int(1)
            guard (1...9).contains(c) else { throw ParseError(description: "selftest-fail: component 1…9") }
            return .failSelfTest(SelfTestComponent(rawValue: UInt8(c)))
        case "output":
            guard words.count == 2, let f = Double(words[1]), f.isFinite, abs(f) <= 50 else {
                throw ParseError(description: "output: expected a change in percent, -50 to 50")
            }
            return .outputStep(f / 100)
        case "spectrum", "spectrum-drift":
            guard words.count == 3, let v = Double(words[2]), v.isFinite, abs(v) <= 10 else {
                throw ParseError(description: "\(verb): expected kvp, low or high and a change of -10 to 10 keV (kV)")
            }
            let shift: SpectralShift
            switch words[1].lowercased() {
            case "kvp": shift = SpectralShift(kVp: v)
            case "low": shift = SpectralShift(lowThresholdKeV: v)
            case "high": shift = SpectralShift(highThresholdKeV: v)
            default: throw ParseError(description: "\(verb): expected kvp, low or high, not \(words[1])")
            }
            return verb == "spectrum" ? .spectrumStep(shift) : .spectrumDrift(shift)
        case "watchdog-floor":
            let ms = try int(1)
            guard ms <= 60_000 else { throw ParseError(description: "watchdog-floor: 0 to 60000 ms") }
            return .watchdogFloor(ms == 0 ? nil : .milliseconds(ms))
        case "clear": return .clearInjected
        default:
            throw ParseError(description: "unknown command '\(verb)'; try 'help'")
        }
    }
}
