import DXAcquisition
import DXProtocol
@testable import DXDaemon
@testable import DXDecomposition
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// The daemon's own files fed garbage: the calibration and the exam protocol. Each gets a
/// clear refusal, never a crash and never a patient scan on a bad calibration.
@Suite("Daemon files: calibration and exam protocol")
struct DaemonFilesTests {
    @Test func aBadCalibrationFileRefusesPatientScans() throws {
        let dir = TemporaryDirectory()
        let store = CalibrationStore(stateDirectory: dir.path)
        guard case .failure(.missing) = store.load() else { Issue.record("a missing file loaded"); return }
        for garbage in ["", "{", "not json at all", #"{"version": 2}"#, String(repeating: "x", count: 100_000)] {
            try Data(garbage.utf8).write(to: URL(fileURLWithPath: store.path))
            guard case .failure(let problem) = store.load() else { Issue.record("garbage loaded: \(garbage.prefix(20))"); continue }
            #expect(problem.description.contains("dexa service calibrate"), "\(problem)")
        }
    }

    @Test func aCalibrationOfAnotherVersionOrAPoorFitIsRefused() throws {
        let dir = TemporaryDirectory()
        let store = CalibrationStore(stateDirectory: dir.path)
        let model = LinearModel(coefficients: [Double](repeating: 0.1, count: 16), means: [Double](repeating: 0, count: 16), scales: [Double](repeating: 1, count: 16))
        let soft = LinearModel(coefficients: [Double](repeating: 0.1, count: 14), means: [Double](repeating: 0, count: 14), scales: [Double](repeating: 1, count: 14))
        let fat = LinearModel(coefficients: [Double](repeating: 0.1, count: 6), means: [Double](repeating: 0, count: 6), scales: [Double](repeating: 1, count: 6))
        var c = Calibration(source: "/x.dxcap", created: "2026-11-23", hydroxyapatite: model, softTissue: soft, fatFraction: fat, points: [],
                            residualHydroxyapatite: 0.004, residualSoftTissue: 0.02, residualFatFraction: 0.003,
                            channelResponse: .identity(channels: 144))
        try store.save(c)
        guard case .success = store.load() else { Issue.record("a good calibration was refused"); return }
        c.version = 1
        try store.save(c)
        guard case .failure(.wrongVersion) = store.load() else { Issue.record("an old format loaded"); return }
        // Format 6 (before the low window's square): read, its squares 0; unless it carries
        // squares it cannot have been fitted with.
        c.version = 6
        try store.save(c)
        guard case .success = store.load() else { Issue.record("a format 6 calibration was refused"); return }
        c.channelResponse?.lowCross = [Double](repeating: 0.01, count: 144)
        c.channelResponse?.lowSquare = [Double](repeating: 0.001, count: 144)
        try store.save(c)
        guard case .failure(.unreadable) = store.load() else { Issue.record("a format 6 calibration with squares loaded"); return }
        c.version = Calibration.formatVersion
        try store.save(c)
        guard case .success = store.load() else { Issue.record("a format 7 calibration with squares was refused"); return }
        // A square without its cross term is no map the calibration makes: not well formed.
        c.channelResponse?.lowCross = nil
        try store.save(c)
        guard case .failure(.unreadable) = store.load() else { Issue.record("a square without a cross term loaded"); return }
        c.channelResponse?.lowSquare = nil
        c.residualHydroxyapatite = 0.03
        try store.save(c)
        guard case .failure(.poorFit) = store.load() else { Issue.record("a poor fit loaded"); return }
        c.residualHydroxyapatite = 0.004
        // A channel response cut short, or missing (a hand-edited or truncated file): refused.
        c.channelResponse?.high.removeLast()
        try store.save(c)
        guard case .failure(.unreadable) = store.load() else { Issue.record("a malformed channel response loaded"); return }
        c.channelResponse = nil
        try store.save(c)
        guard case .failure(.unreadable) = store.load() else { Issue.record("a calibration without a channel response loaded"); return }
        c.channelResponse = .identity(channels: 144)
        c.hydroxyapatite.coefficients.removeLast()
        try store.save(c)
        guard case .failure(.unreadable) = store.load() else { Issue.record("a malformed model loaded"); return }
    }

    /// A calibration holds for the unit it was measured on: another unit's file (copied
    /// across, or a device swapped) and one that names no unit are refused for patient scans.
    @Test func anotherUnitsCalibrationIsRefused() throws {
        let dir = TemporaryDirectory()
        try CalibrationFixture.install(stateDirectory: dir.path)
        let store = CalibrationStore(stateDirectory: dir.path)
        var info = SimulatorConfiguration.standardInfo
        guard case .success(let c) = store.load(for: info) else { Issue.record("the fixture was refused on its own unit"); return }
        #expect(c.unit == CalibratedUnit(info))
        info.serial = "DX1-000999"
        guard case .failure(let problem) = store.load(for: info) else { Issue.record("another unit's calibration loaded"); return }
        #expect(problem.description.contains("was made on DX-1 DX1-000123, this is DX-1 DX1-000999"), "\(problem)")
        #expect(problem.description.contains("dexa service calibrate"), "\(problem)")
        info = SimulatorConfiguration.standardInfo
        info.model = "DX-2"
        guard case .failure = store.load(for: info) else { Issue.record("another model's calibration loaded"); return }
        var anonymous = c
        anonymous.unit = nil
        try store.save(anonymous)
        guard case .failure(let none) = store.load(for: SimulatorConfiguration.standardInfo) else { Issue.record("a calibration naming no unit loaded"); return }
        #expect(none.description.contains("does not say which unit"), "\(none)")
        // The installer's other unit, for a second simulated unit of the same physics.
        try CalibrationFixture.install(stateDirectory: dir.path, serial: "DX1-000999")
        guard case .success = store.load(for: info.with(serial: "DX1-000999", model: "DX-1")) else { Issue.record("the re-serialled fixture was refused"); return }
    }

    @Test func aBadExamProtocolStopsTheDaemonWithAClearMessage() async throws {
        let dir = TemporaryDirectory()
        for (text, says) in [("{", "is not an exam protocol"), (#"{"sites": {"ap_spine": {"lines": 0}}}"#, "lines and line_period_us must be positive"),
                             (#"{"sites": {"left_hip": {"mode": "triple"}}}"#, "mode must be dual or single"),
                             (#"{"motion_limit_mm": 0}"#, "motion_limit_mm"), (#"{"budget_minutes": [30, 10]}"#, "budget_minutes")] {
            let file = dir.file("protocol.json")
            try Data(text.utf8).write(to: URL(fileURLWithPath: file))
            #expect(throws: ProtocolFileError.self) { try ExamProtocol.load(path: file) }
            do { _ = try ExamProtocol.load(path: file) } catch { #expect("\(error)".contains(says), "\(text): \(error)") }
        }
        // And at start-up: exit status 2, one line naming the key.
        let file = dir.file("protocol.json")
        try Data("{".utf8).write(to: URL(fileURLWithPath: file))
        let daemon = ChildProcessResult.run(BuiltProducts.path("dexad"), ["--simulator", "--socket", dir.file("c.sock"), "--state-directory", dir.file("state"),
                                                                           "--config", try Self.config(dir, "exam_protocol = \(file)")])
        #expect(daemon.status == 2, "\(daemon.err)")
        #expect(daemon.err.contains("exam_protocol"), "\(daemon.err)")
    }

    /// A Z-score reference that cannot be read or fails its checks stops the daemon at start-up
    /// (exit status 2, naming the key and the problem): never scores from half a table.
    @Test func aBadZReferenceStopsTheDaemonWithAClearMessage() async throws {
        let dir = TemporaryDirectory()
        let file = dir.file("z.json")
        for (text, says) in [("{", "is not an age-matched reference"),
                             (#"{"name":"a","version":"1","population":"p","scale":"s","source":{"text":"t"},"status":"verified","tables":[]}"#, "no tables")] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: file))
            let daemon = ChildProcessResult.run(BuiltProducts.path("dexad"), ["--simulator", "--socket", dir.file("c.sock"), "--state-directory", dir.file("state"),
                                                                               "--config", try Self.config(dir, "z_reference = \(file)")])
            #expect(daemon.status == 2, "\(daemon.err)")
            #expect(daemon.err.contains("z_reference") && daemon.err.contains(says), "\(daemon.err)")
        }
        var c = DaemonConfiguration()
        #expect(throws: ConfigurationError.self) { try c.apply(fileText: "z_reference = relative.json\n") }
        try c.apply(fileText: "z_reference = /etc/dexa/z-reference.json\n")
        #expect(c.zReference == "/etc/dexa/z-reference.json")
    }

    /// `qc_day_starts`: HH:MM or a clear error, nothing else.
    @Test func theQCDayStartIsATimeOfDay() throws {
        var c = DaemonConfiguration()
        #expect(c.qcDayStartMinutes == 0)
        try c.apply(fileText: "qc_day_starts = 05:30\n")
        #expect(c.qcDayStartMinutes == 330)
        for bad in ["5:30", "24:00", "05:60", "-1:00", "05:30:00", "", "ab:cd", "０5:30", "05"] {
            var d = DaemonConfiguration()
            #expect(throws: ConfigurationError.self, "\(bad)") { try d.apply(fileText: "qc_day_starts = \(bad)\n") }
            #expect(d.qcDayStartMinutes == 0)
        }
    }

    static func config(_ dir: TemporaryDirectory, _ line: String) throws -> String {
        let path = dir.file("dexad.conf")
        try Data("socket_group = none\naudit_log = \(dir.file("audit.log"))\n\(line)\n".utf8).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// A short-lived process run to its end.
struct ChildProcessResult {
    var status: Int32
    var err: String

    static func run(_ executable: String, _ arguments: [String]) -> ChildProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        do { try p.run() } catch { return ChildProcessResult(status: -1, err: "\(error)") }
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return ChildProcessResult(status: p.terminationStatus, err: String(decoding: data, as: UTF8.self))
    }
}

/// The USB identity is named once (ICDUSB); the udev rule, which cannot import it, says the same.
@Suite struct USBIdentityTests {
    @Test func theUdevRuleMatchesTheICDsIDs() throws {
        let rule = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Systemd/70-dexa.rules")
        let text = try String(contentsOf: rule, encoding: .utf8)
        let vendor = String(format: "%04x", ICDUSB.vendorID), product = String(format: "%04x", ICDUSB.productID)
        #expect(text.contains("ATTR{idVendor}==\"\(vendor)\"") && text.contains("ATTR{idProduct}==\"\(product)\""), "\(text)")
        #expect(DaemonConfiguration().usbVendorID == ICDUSB.vendorID && DaemonConfiguration().usbProductID == ICDUSB.productID)
    }
}

/// The config file's settings fed garbage: each refused with the line and the key, and nothing
/// set; the simulated unit's serial (a second unit for tests that compare devices).
@Suite("Daemon configuration")
struct DaemonConfigurationTests {
    @Test func aSecondSimulatedUnitsSerial() throws {
        var c = DaemonConfiguration()
        #expect(c.simulatorSerial == nil)
        try c.apply(fileText: "# a second unit\nsimulator_serial = DX1-000999\n")
        #expect(c.simulatorSerial == "DX1-000999")
        for bad in ["simulator_serial =", "simulator_serial = two words", "simulator_serial = ünï", "simulator_serial = " + String(repeating: "X", count: 127),
                    "simulator_serials = DX1", "simulator_serial DX1", "time_scale = 0", "time_scale = nan", "simulator_seed = -1"] {
            var fresh = DaemonConfiguration()
            do {
                try fresh.apply(fileText: "socket = /tmp/x.sock\n" + bad + "\n")
                Issue.record("accepted: \(bad)")
            } catch {
                #expect(error.description.contains("line 2"), "\(bad): \(error)")
            }
            #expect(fresh.simulatorSerial == nil && fresh.timeScale == 1)
        }
    }
}

extension DeviceInfo {
    func with(serial: String, model: String) -> DeviceInfo {
        var i = self
        i.serial = serial; i.model = model
        return i
    }
}
