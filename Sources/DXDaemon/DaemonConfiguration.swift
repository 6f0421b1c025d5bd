import DXClinical
import DXProtocol
import DXSimulator
import Foundation

/// Where the daemon finds its DX-1.
public enum DeviceSpec: Sendable, Equatable, CustomStringConvertible {
    /// The simulator in the daemon's own process (`--simulator`).
    case embeddedSimulator
    /// A `dexa-sim` process serving its device socket at this path (`sim:PATH`).
    case simulatorSocket(String)
    /// A DX-1 on USB (`usb`, or `usb:SERIAL` to pick one unit).
    case usb(serial: String?)

    public init(parsing s: String) throws(ConfigurationError) {
        if s == "simulator" || s == "sim" || s == "embedded" { self = .embeddedSimulator; return }
        if s.hasPrefix("sim:") {
            let path = String(s.dropFirst(4))
            guard !path.isEmpty else { throw .invalid("device", "sim: needs a socket path, e.g. sim:/run/dexa-sim/device.sock") }
            self = .simulatorSocket(path)
            return
        }
        if s == "usb" { self = .usb(serial: nil); return }
        if s.hasPrefix("usb:") {
            let serial = String(s.dropFirst(4))
            guard !serial.isEmpty, serial.count <= 126, serial.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                throw .invalid("device", "usb: needs a serial number, e.g. usb:DX1-000123")
            }
            self = .usb(serial: serial)
            return
        }
        throw .invalid("device", "'\(s)' is not a device (usb, usb:SERIAL, simulator, sim:PATH)")
    }

    public var description: String {
        switch self {
        case .embeddedSimulator: "simulator"
        case .simulatorSocket(let p): "sim:\(p)"
        case .usb(let serial): "usb" + (serial.map { ":" + $0 } ?? "")
        }
    }
}

public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
    case unreadable(String, String)
    case invalid(String, String)
    case syntax(line: Int, String)

    public var description: String {
        switch self {
        case let .unreadable(path, why): "cannot read config \(path): \(why)"
        case let .invalid(key, why): "config '\(key)': \(why)"
        case let .syntax(line, why): "config line \(line): \(why)"
        }
    }
}

/// The daemon's settings. The file (default `/etc/dexa/dexad.conf`) holds `key = value`
/// lines, `#` starts a comment; flags override the file. Keys: see docs/configuration.md.
public struct DaemonConfiguration: Sendable, Equatable {
    public var socketPath = "/run/dexa/control.sock"
    public var device: DeviceSpec = .usb(serial: nil)
    public var stateDirectory = "/var/lib/dexa"
    /// Record every scan as a capture under `<state>/captures`.
    public var recordCaptures = true
    /// Time runs this many times faster (simulator use only; 1 on a real unit).
    public var timeScale = 1.0
    public var simulatorSeed: UInt64 = 1
    /// The embedded simulator's choice among the freedoms the ICD leaves (event order, record
    /// splitting, ...): 0 the canonical order, any other seed a reproducible mix (docs/simulator.md).
    public var simulatorOrderings: UInt64 = 0
    /// Test speed only: the embedded simulator's watchdog also waits this much real time.
    public var simulatorWatchdogFloorMs: Int?
    /// The unit's dose-area product per mA·s (mGy·cm²), for estimating the dose of scans the
    /// device reports none for, until a completed scan gives the unit's own figure.
    public var dapPerMAs: Double?
    /// What lies on the embedded simulator's table: empty, calibration, esp, or a phantom JSON file.
    public var simulatorPhantom = "empty"
    /// Which physics model the embedded simulator's detector uses (docs/physics.md).
    public var simulatorPhysics: PhysicsModel = .kramers
    /// The embedded simulator's serial number (GET_INFO); nil: the simulator's own. A second
    /// simulated unit for tests that compare devices.
    public var simulatorSerial: String?
    public var commandTimeoutMs = 2000
    public var logLevel = "info"
    public var technologistGroup = "dexa"
    public var serviceGroup = "dexa-service"
    /// Where the audit trail goes (default: `/var/log/dexa/audit.log`).
    public var auditLog: String?
    /// The DX-1's USB ids (ICD §1: configurable in the host).
    public var usbVendorID: UInt16 = ICDUSB.vendorID
    public var usbProductID: UInt16 = ICDUSB.productID
    /// The control socket's mode and group when the daemon creates it (no socket activation).
    public var socketMode = 0o660
    public var socketGroup: String? = "dexa"
    /// The exam database (default `<state>/exams.sqlite`).
    public var examDatabase: String?
    /// A JSON file over the standard exam protocol (scan geometry per site, budget, motion
    /// limit, table limit): docs/exam.md.
    public var examProtocol: String?
    /// The Z-score reference (an age- and sex-matched table, docs/clinical-references.md);
    /// none by default.
    public var zReference: String?
    /// Phantom QC scans that set the baseline (10–25; docs/qc.md).
    public var qcBaselineScans = QualityControl.Rules().baselineScans
    /// What "no QC today" (or a baseline still filling) does to patient exams: `warn` (the
    /// report says so) or `block`; a failed QC always blocks (docs/qc.md, "Lockout").
    public var qcWhenDue = QualityControl.DuePolicy.warn
    /// When the QC day starts (`qc_day_starts`, HH:MM local time), minutes after midnight.
    public var qcDayStartMinutes = 0
    /// How long a DICOM object may wait in the queue before `dicom.queue` says the queue is
    /// stuck (`dicom_queue_alert_s`, 60 s to a day; default 30 min).
    public var dicomQueueAlertSeconds: Double = 1800

    /// The QC rules in force.
    public var qcRules: QualityControl.Rules {
        var r = QualityControl.Rules()
        r.baselineScans = qcBaselineScans
        return r
    }

    public init() {}

    public var examDatabasePath: String { examDatabase ?? stateDirectory + "/exams.sqlite" }

    public var auditLogPath: String { auditLog ?? "/var/log/dexa/audit.log" }

    public var captureDirectory: String { stateDirectory + "/captures" }

    public static let keys = ["socket", "device", "state_directory", "record_captures", "time_scale",
                              "simulator_seed", "simulator_orderings", "simulator_watchdog_floor_ms", "simulator_phantom", "simulator_physics", "simulator_serial", "dap_per_mas_mgy_cm2", "command_timeout_ms", "log_level", "technologist_group", "service_group",
                              "audit_log", "socket_mode", "socket_group", "usb_vendor_id", "usb_product_id",
                              "exam_database", "exam_protocol", "z_reference", "qc_baseline_scans", "qc_when_due", "qc_day_starts",
                              "dicom_queue_alert_s"]

    /// Applies one `key = value` setting.
    public mutating func set(_ key: String, _ value: String) throws(ConfigurationError) {
        switch key {
        case "socket":
            guard !value.isEmpty else { throw .invalid(key, "must not be empty") }
            socketPath = value
        case "device": device = try DeviceSpec(parsing: value)
        case "state_directory":
            guard value.hasPrefix("/") || value.hasPrefix(".") else { throw .invalid(key, "must be a path") }
            stateDirectory = value
        case "record_captures":
            guard let b = ["true": true, "yes": true, "1": true, "false": false, "no": false, "0": false][value.lowercased()] else {
                throw .invalid(key, "expected true or false")
            }
            recordCaptures = b
        case "time_scale":
            guard let v = Double(value), v.isFinite, v >= 1, v <= 10_000 else { throw .invalid(key, "expected a number from 1 to 10000") }
            timeScale = v
        case "simulator_seed":
            guard let v = UInt64(value) else { throw .invalid(key, "expected a non-negative integer") }
            simulatorSeed = v
        case "simulator_orderings":
            guard let v = UInt64(value) else { throw .invalid(key, "expected a non-negative integer (0: the canonical order)") }
            simulatorOrderings = v
        case "simulator_watchdog_floor_ms":
            guard let v = Int(value), (0...10_000).contains(v) else { throw .invalid(key, "expected 0 to 10000") }
            simulatorWatchdogFloorMs = v
        case "dap_per_mas_mgy_cm2":
            guard let v = Double(value), v.isFinite, v > 0, v < 1000 else { throw .invalid(key, "expected a positive number (mGy·cm² per mA·s)") }
            dapPerMAs = v
        case "simulator_phantom":
            guard !value.isEmpty else { throw .invalid(key, "expected empty, calibration, esp or a phantom JSON file") }
            simulatorPhantom = value
        case "simulator_serial":
            // As `usb:SERIAL` takes it: the USB serial string descriptor's 126 characters at most.
            guard (1...126).contains(value.count), value.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                throw .invalid(key, "expected 1 to 126 ASCII characters without spaces")
            }
            simulatorSerial = value
        case "simulator_physics":
            guard let v = PhysicsModel(rawValue: value) else {
                throw .invalid(key, "'\(value)' is not a physics model; expected \(PhysicsModel.allCases.map(\.rawValue).joined(separator: " or "))")
            }
            simulatorPhysics = v
        case "command_timeout_ms":
            guard let v = Int(value), (50...60_000).contains(v) else { throw .invalid(key, "expected 50 to 60000") }
            commandTimeoutMs = v
        case "log_level":
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(value) else {
                throw .invalid(key, "expected trace, debug, info, notice, warning, error or critical")
            }
            logLevel = value
        case "technologist_group", "service_group":
            guard !value.isEmpty, value.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw .invalid(key, "expected a group name")
            }
            if key == "technologist_group" { technologistGroup = value } else { serviceGroup = value }
        case "audit_log":
            guard value.hasPrefix("/") else { throw .invalid(key, "must be an absolute path") }
            auditLog = value
        case "socket_mode":
            guard let v = Int(value, radix: 8), (0...0o777).contains(v) else { throw .invalid(key, "expected an octal mode such as 0660") }
            socketMode = v
        case "usb_vendor_id", "usb_product_id":
            let digits = value.lowercased().hasPrefix("0x") ? String(value.dropFirst(2)) : value
            guard let v = UInt16(digits, radix: 16) else { throw .invalid(key, "expected a 16-bit hex id such as 0x1209") }
            if key == "usb_vendor_id" { usbVendorID = v } else { usbProductID = v }
        case "exam_database":
            guard value.hasPrefix("/") || value.hasPrefix(".") else { throw .invalid(key, "must be a path") }
            examDatabase = value
        case "exam_protocol":
            guard value.hasPrefix("/") || value.hasPrefix(".") else { throw .invalid(key, "must be a path") }
            examProtocol = value
        case "z_reference":
            guard value.hasPrefix("/") || value.hasPrefix(".") else { throw .invalid(key, "must be a path") }
            zReference = value
        case "qc_baseline_scans":
            guard let v = Int(value), (10...25).contains(v) else { throw .invalid(key, "expected 10 to 25 scans") }
            qcBaselineScans = v
        case "dicom_queue_alert_s":
            guard let v = Int(value), (60...86_400).contains(v) else { throw .invalid(key, "expected 60 to 86400 seconds") }
            dicomQueueAlertSeconds = Double(v)
        case "qc_when_due":
            guard let v = QualityControl.DuePolicy(rawValue: value) else { throw .invalid(key, "expected warn or block") }
            qcWhenDue = v
        case "qc_day_starts":
            let parts = value.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isASCII) }),
                  let h = Int(parts[0]), let m = Int(parts[1]), (0...23).contains(h), (0...59).contains(m) else {
                throw .invalid(key, "expected HH:MM, 00:00 to 23:59")
            }
            qcDayStartMinutes = h * 60 + m
        case "socket_group":
            socketGroup = value.isEmpty || value == "none" ? nil : value
        default:
            throw .invalid(key, "unknown key (known: \(DaemonConfiguration.keys.joined(separator: ", ")))")
        }
    }

    /// Reads a config file's text over these settings.
    public mutating func apply(fileText text: String) throws(ConfigurationError) {
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else { throw .syntax(line: n + 1, "expected key = value") }
            let key = trimmed[..<eq].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            do { try set(key, value) } catch { throw .syntax(line: n + 1, error.description) }
        }
    }

    public mutating func apply(file path: String) throws(ConfigurationError) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw .unreadable(path, (error as NSError).localizedDescription)
        }
        try apply(fileText: text)
    }
}
