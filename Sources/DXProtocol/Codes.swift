/// Command status codes, ICD §3.
public enum CommandStatus: UInt16, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case ok = 0
    case unknownOpcode = 1
    case badParams = 2
    case badState = 3
    case interlockOpen = 4
    case faultActive = 5
    case busy = 6
    case malformed = 7

    public var description: String {
        switch self {
        case .ok: "OK"
        case .unknownOpcode: "UNKNOWN_OPCODE"
        case .badParams: "BAD_PARAMS"
        case .badState: "BAD_STATE"
        case .interlockOpen: "INTERLOCK_OPEN"
        case .faultActive: "FAULT_ACTIVE"
        case .busy: "BUSY"
        case .malformed: "MALFORMED"
        }
    }
}

/// Device states, ICD §3.
public enum DeviceState: UInt8, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case boot = 0
    case idle = 1
    case moving = 2
    case ready = 3
    case scanning = 4
    case fault = 5
    case safe = 6

    public var description: String {
        switch self {
        case .boot: "BOOT"
        case .idle: "IDLE"
        case .moving: "MOVING"
        case .ready: "READY"
        case .scanning: "SCANNING"
        case .fault: "FAULT"
        case .safe: "SAFE"
        }
    }
}

/// Scan modes, ICD §3.
public enum ScanMode: UInt8, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// X-ray off: the detector reads its dark offsets.
    case dark = 0
    /// Both energy windows.
    case dual = 1
    /// High window only; low samples are 0 (lateral VFA).
    case single = 2

    public var description: String {
        switch self {
        case .dark: "dark"
        case .dual: "dual"
        case .single: "single"
        }
    }

    public init?(name: String) {
        guard let m = ScanMode.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = m
    }
}

/// The interlock chain, ICD §3: one bit per interlock, set when it is closed (safe).
public struct Interlocks: OptionSet, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let roomDoorClosed = Interlocks(rawValue: 1 << 0)
    public static let emergencyStopReleased = Interlocks(rawValue: 1 << 1)
    public static let tableLocked = Interlocks(rawValue: 1 << 2)
    public static let collimatorVerified = Interlocks(rawValue: 1 << 3)
    public static let generatorReady = Interlocks(rawValue: 1 << 4)
    public static let allClosed = Interlocks(rawValue: 0x001F)

    /// Name of each interlock, by bit, in the words a technologist sees.
    public static let names: [(Interlocks, String, String)] = [
        (.roomDoorClosed, "door", "room door"),
        (.emergencyStopReleased, "estop", "emergency stop"),
        (.tableLocked, "table", "table lock"),
        (.collimatorVerified, "collimator", "collimator"),
        (.generatorReady, "generator", "generator"),
    ]

    public init(name: String) throws(InterlockNameError) {
        guard let entry = Interlocks.names.first(where: { $0.1 == name.lowercased() }) else {
            throw InterlockNameError(name: name)
        }
        self = entry.0
    }

    /// The interlocks of the chain that are open.
    public var open: [String] {
        Interlocks.names.filter { !contains($0.0) }.map { $0.2 }
    }

    public var description: String {
        let o = open
        return o.isEmpty ? "all closed" : "open: " + o.joined(separator: ", ")
    }
}

public struct InterlockNameError: Error, CustomStringConvertible {
    public let name: String
    public var description: String {
        "unknown interlock '\(name)' (known: \(Interlocks.names.map { $0.1 }.joined(separator: ", ")))"
    }
}

/// Fault codes, ICD §4. Open-ended: a firmware may report a code this host does not know.
public struct FaultCode: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let none = FaultCode(rawValue: 0)
    public static let tubeArc = FaultCode(rawValue: 1)
    public static let overTemperature = FaultCode(rawValue: 2)
    public static let motorStall = FaultCode(rawValue: 3)
    public static let highVoltageOutOfRange = FaultCode(rawValue: 4)
    public static let detectorReadout = FaultCode(rawValue: 5)
    public static let dataOverflow = FaultCode(rawValue: 6)

    public static let names: [UInt16: String] = [
        0: "none", 1: "tube arc", 2: "over-temperature", 3: "motor stall",
        4: "high voltage out of range", 5: "detector readout error", 6: "data overflow",
    ]

    public var description: String { FaultCode.names[rawValue] ?? "fault \(rawValue)" }
}

/// Why a scan was aborted, ICD §5.
public struct AbortReason: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let host = AbortReason(rawValue: 1)
    public static let interlock = AbortReason(rawValue: 2)
    public static let watchdog = AbortReason(rawValue: 3)
    public static let fault = AbortReason(rawValue: 4)
    public static let xrayOff = AbortReason(rawValue: 5)

    public var description: String {
        switch rawValue {
        case 1: "host abort"
        case 2: "interlock opened"
        case 3: "watchdog expired"
        case 4: "device fault"
        case 5: "XRAY_OFF"
        default: "reason \(rawValue)"
        }
    }
}

/// Self-test components, ICD §3.
public struct SelfTestComponent: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let names: [UInt8: String] = [
        1: "generator", 2: "tube", 3: "detector", 4: "x drive", 5: "y drive",
        6: "arm rotation", 7: "interlock chain", 8: "memory", 9: "clock",
    ]
    public var description: String { SelfTestComponent.names[rawValue] ?? "component \(rawValue)" }

    public static let generator = SelfTestComponent(rawValue: 1)
    public static let tube = SelfTestComponent(rawValue: 2)
    public static let detector = SelfTestComponent(rawValue: 3)
    public static let xDrive = SelfTestComponent(rawValue: 4)
    public static let yDrive = SelfTestComponent(rawValue: 5)
    public static let armRotation = SelfTestComponent(rawValue: 6)
    public static let interlockChain = SelfTestComponent(rawValue: 7)
    public static let memory = SelfTestComponent(rawValue: 8)
    public static let clock = SelfTestComponent(rawValue: 9)
}

/// Line flags, ICD §6.
public struct LineFlags: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let xrayOn = LineFlags(rawValue: 1 << 0)
    public static let saturated = LineFlags(rawValue: 1 << 1)
    public static let highVoltageOutOfTolerance = LineFlags(rawValue: 1 << 2)
}

/// Which endpoint bytes crossed, ICD §1; also the capture record's endpoint (§7).
public enum Endpoint: UInt8, Sendable, Codable, CaseIterable {
    case commandOut = 0x01
    case responseIn = 0x81
    case dataIn = 0x82
}
