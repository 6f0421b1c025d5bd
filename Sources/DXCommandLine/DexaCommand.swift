import ArgumentParser
import DXControl
import DXDecomposition
import DXProtocol
import DXUSB
import Foundation

/// `dexa`: the technologist's and service engineer's command line.
public struct DexaCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dexa",
        abstract: "Drive the DX-1 densitometer through dexad.",
        discussion: "Exit status: " + ExitStatus.allCases.map { "\($0.rawValue) \($0.meaning)" }.joined(separator: "; ") + ".",
        subcommands: [Info.self, Status.self, Home.self, Move.self, Scan.self, Abort.self, Watch.self, Devices.self, Analyze.self, Reanalyze.self, CaptureCommands.self, ExamCommands.self, PrecisionCommands.self, QCCommands.self,
                      Worklist.self, DicomCommands.self, ServiceCommands.self, SelfTest.self, Sensors.self, Log.self])

    public init() {}

    /// Runs the command; errors become one line on standard error.
    public static func main() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let e as CLIError {
            Output.error(e.message)
            Foundation.exit(e.status.rawValue)
        } catch {
            exit(withError: error)
        }
    }
}

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The unit's identity: model, serial, firmware, detector.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.deviceInfo)
        if options.json { Output.json(r); return }
        let d = r.device
        print("\(d.model) \(d.serial) firmware \(d.fwMajor).\(d.fwMinor).\(d.fwPatch) via \(r.transport)")
        Output.table(try JSONValue(encoding: d), keys: ["channels", "pitch_um", "energy_low_kev", "energy_high_kev", "max_line_rate_hz",
                                                       "travel_x_um", "travel_y_um", "air_zone_y_um", "watchdog_ms"])
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "State, interlocks, X-ray, position and link counters.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.deviceStatus)
        if options.json { Output.json(r); return }
        print("state      \(r.state)")
        print("X-ray      \(r.xrayOn ? "ON" : "off")")
        print("interlocks \(r.interlocksOpen.isEmpty ? "all closed" : "OPEN: " + r.interlocksOpen.joined(separator: ", "))")
        print("position   x \(r.xUm) µm, y \(r.yUm) µm, arm \(Output.degrees(r.armAngleDeg))°")
        print("tube       \(r.tubeTempC) °C")
        if r.fault != 0 { print("fault      \(r.fault) \(r.faultText)") }
        print("link       \(r.link.dataFrames) data frames, \(r.link.dataGaps) gaps, \(r.link.timeouts) timeouts")
    }
}

struct Home: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Move the gantry to its home position.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.deviceHome)
        if options.json { Output.json(r) } else { print("homed: x \(r.xUm) µm, y \(r.yUm) µm, arm \(Output.degrees(r.armAngleDeg))°") }
    }
}

struct Move: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Move the gantry (carriage in µm, arm in degrees).")
    @OptionGroup var options: ConnectionOptions
    @Option(name: .customLong("x"), help: "x in µm") var x: Int32
    @Option(name: .customLong("y"), help: "y in µm") var y: Int32
    // Named with its unit: the option took tenths of a degree as `--arm` before, and an old
    // script must fail rather than move the arm ten times as far.
    @Option(name: .customLong("arm-deg"), help: "Arm angle in degrees, to a tenth (0 AP, 90 lateral).") var arm: Double = 0

    func run() async throws {
        let r = try await options.call(.deviceMove, MoveParams(xUm: x, yUm: y, armAngleDeg: arm))
        if options.json { Output.json(r) } else { print("moved: x \(r.xUm) µm, y \(r.yUm) µm, arm \(Output.degrees(r.armAngleDeg))°") }
    }
}

struct Scan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a raw scan (service): configure, start, receive every line.")
    @OptionGroup var options: ConnectionOptions
    @Option(help: "dark, dual or single") var mode: String = "dual"
    @Option(help: "Number of lines.") var lines: UInt32 = 200
    @Option(name: .customLong("x"), help: "Carriage x, µm (default: centre).") var x: Int32?
    @Option(name: .customLong("y-start"), help: "First line's y, µm.") var yStart: Int32?
    @Option(help: "Line step, µm.") var step: Int32?
    @Option(help: "Line period, µs (default: the device's maximum rate).") var period: UInt32?
    @Option(help: "Tube current, µA.") var current: UInt32?
    @Option(help: "Lines per data frame (1-64).") var linesPerFrame: UInt16?
    @Option(help: "Capture role: dark, air, calibration, qc.") var role: String?

    func run() async throws {
        let params = ScanRunParams(mode: mode, xUm: x, yStartUm: yStart, lines: lines, lineStepUm: step, linePeriodUs: period,
                                   tubeCurrentUA: current, linesPerFrame: linesPerFrame, role: role)
        let bar = ProgressBar()
        let showBar = !options.json
        try await options.waitForDevice()
        let result: ScanReport
        do {
            result = try await options.run { connection in
                let progress = Task {
                    for await n in connection.notifications {
                        guard showBar, let p = Notice.scanProgress.decode(n.method, n.params) else { continue }
                        bar.draw(done: p.lines, total: Int(p.plannedLines), rate: p.linesPerSecond, eta: p.etaSeconds)
                    }
                }
                defer { progress.cancel() }
                return try await connection.call(.scanRun, params)
            }
        } catch let e as CLIError {
            if showBar { bar.finish() }
            if options.json, let d = e.data { Output.json(d) }
            throw e
        }
        if showBar { bar.finish() }
        if options.json { Output.json(result); return }
        print("scan \(result.scanID) \(result.result): \(result.lines) of \(result.plannedLines) lines, \(result.gaps) gaps")
        print("exposure \(result.exposureMs) ms, DAP \(String(format: "%.3f", result.dapMGyCm2)) mGy·cm², X-ray \(result.xrayOff ? "off (verified)" : "NOT VERIFIED OFF")")
        if let c = result.capture { print("capture \(c)") }
    }
}

struct Abort: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Abort the running scan (X-rays off at once).")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.scanAbort)
        if options.json { Output.json(r); return }
        if let id = r.abortedScanID { print("aborted scan \(id)") } else { print("no scan was running") }
    }
}

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Follow the device's events as they happen (Ctrl-C to stop).")
    @OptionGroup var options: ConnectionOptions
    @Option(help: "Stop after this many events.") var count: Int?

    func run() async throws {
        let json = options.json
        let limit = count
        try await options.run { connection in
            _ = try await connection.call(.eventsSubscribe, SubscribeParams())
            var seen = 0
            for await n in connection.notifications {
                guard let e = Notice.event.decode(n.method, n.params) else { continue }
                if json { Output.json(e) } else { print(Watch.describe(e)) }
                Output.flush()
                seen += 1
                if let limit, seen >= limit { break }
            }
        }
    }

    static func describe(_ e: DeviceEventNotice) -> String {
        let stamp = Date().formatted(date: .omitted, time: .standard)
        switch e.type {
        case .state: return "\(stamp) state \(e.old ?? "?") -> \(e.new ?? "?")"
        case .interlocks:
            let open = e.interlocksOpen ?? []
            return "\(stamp) interlocks \(open.isEmpty ? "all closed" : "OPEN: " + open.joined(separator: ", "))"
        case .fault: return "\(stamp) FAULT \(e.code ?? 0) \(e.fault ?? ""): \(e.message ?? "")"
        case .scanComplete: return "\(stamp) scan \(e.scanID ?? 0) complete: \(e.lines ?? 0) lines, \(e.exposureMs ?? 0) ms"
        case .scanAborted: return "\(stamp) scan \(e.scanID ?? 0) ABORTED: \(e.reason ?? "")"
        default:
            var fields = (try? JSONValue(encoding: e)) ?? .null
            if case .object(var d) = fields { d.removeValue(forKey: "type"); fields = .object(d) }
            return "\(stamp) \(e.type.rawValue) \(fields)"
        }
    }
}

struct SelfTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "selftest", abstract: "Run the device's self-test.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.serviceSelftest)
        if options.json { Output.json(r); return }
        for i in r.items {
            print("\(i.component.padding(toLength: 16, withPad: " ", startingAt: 0)) \(i.result)  value \(i.value)  code \(i.code)")
        }
    }
}

struct Sensors: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Read the device's sensors (--watch refreshes like top).")
    @OptionGroup var options: ConnectionOptions
    @Flag(help: "Refresh until interrupted.") var watch = false
    @Option(help: "Seconds between refreshes with --watch.") var interval: Double = 2
    @Option(help: "Stop after this many refreshes.") var count: Int?

    func validate() throws {
        guard interval >= 0.1, interval <= 3600 else { throw ValidationError("--interval must be 0.1 to 3600 seconds") }
    }

    func run() async throws {
        var shown = 0
        repeat {
            let r = try await options.call(.serviceSensors)
            if options.json { Output.json(r) } else {
                if watch && Output.stdoutIsTerminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                if watch { print("DX-1 sensors at \(Date().formatted(date: .omitted, time: .standard)) (every \(interval) s, Ctrl-C to stop)") }
                Output.table(try JSONValue(encoding: r))
            }
            Output.flush()
            shown += 1
            if let count, shown >= count { break }
            if watch { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
        } while watch
    }
}

/// `dexa service …`: the service engineer's tools.
struct ServiceCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service", abstract: "Service engineer's tools (members of dexa-service).",
        subcommands: [SelfTest.self, Sensors.self, Log.self, Report.self, Metrics.self, Reset.self, Calibrate.self])
}

struct Calibrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Calibrate: dark, air and calibration-phantom scans into one capture, fitted and stored.")
    @OptionGroup var options: ConnectionOptions
    @Option(help: "The calibration phantom's ICD §8 JSON file (readable by dexad).") var phantom: String

    func run() async throws {
        try await options.waitForDevice()
        let r = try await options.call(.serviceCalibrate, CalibrateParams(phantom: phantom))
        if options.json { Output.json(r); return }
        print("calibrated from \(r.cells) cells: residual bone \(String(format: "%.4f", r.residualHydroxyapatiteGCm2)) g/cm² (limit \(String(format: "%.4f", r.limitHydroxyapatiteGCm2))), soft \(String(format: "%.3f", r.residualSoftTissueGCm2)) g/cm²")
        print("detector dead time \(String(format: "%.1f", r.deadTimeNs)) ns; scatter in the fan: "
              + (r.scatterAmplitude.map { a in String(format: "amplitude %.4f, width %.1f mm", a, r.scatterWidthMM ?? 0) } ?? "none told from noise"))
        print("low window: " + (r.lowWindowMixing.map { String(format: "%.1f %% of its air counts are high-energy photons, taken out", $0 * 100) }
                                ?? "no high-energy photons found in it"))
        if let inferred = r.inferredChannels, !inferred.isEmpty {
            print("channels \(inferred.map(String.init).joined(separator: ", ")) at the fan's ends saw no cell: their response is their neighbours'")
        }
        if let e = r.spectraMeanKeV, let z = r.spectraResidualSigmas, e.count == 2, z.count == 2 {
            print(String(format: "spectra: the windows count at a mean %.1f and %.1f keV, fitting the cells to %.2fσ and %.2fσ; ", e[0], e[1], z[0], z[1])
                  + (r.modelsContinued == true ? "the models continued by them beyond the phantom's cells"
                     : "the models are the cells' alone (continued by the spectra they would fail the acceptance rule)"))
        }
        print("calibration \(r.calibration) from capture \(r.capture)")
    }
}

struct Reset: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reset the unit (it leaves the bus and comes back); waits until it is back.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.serviceReset)
        if options.json { Output.json(r) } else { print("\(r.serial) back after \(Int(r.afterMs)) ms, \(r.state)") }
    }
}

struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the DX-1 units attached to this machine's USB (bus, address, serial, firmware).")
    @OptionGroup var output: OutputOptions
    @Option(help: "USB vendor id (hex).") var vendor: String = String(ICDUSB.vendorID, radix: 16)
    @Option(help: "USB product id (hex).") var product: String = String(ICDUSB.productID, radix: 16)

    func run() async throws {
        guard let v = UInt16(vendor, radix: 16), let p = UInt16(product, radix: 16) else { throw ValidationError("ids are 4 hex digits") }
        let found = UdevDiscovery.enumerate(USBDeviceMatch(vendorID: v, productID: p))
        if output.json {
            Output.json(found)
            return
        }
        if found.isEmpty {
            print("no DX-1 attached (\(vendor):\(product))")
            return
        }
        print("BUS ADDR SERIAL          FIRMWARE  NODE")
        for d in found {
            print(String(format: "%03d %03d  ", d.busnum, d.devnum) + (d.serial ?? "-").padding(toLength: 15, withPad: " ", startingAt: 0)
                  + " " + (d.firmware ?? "-").padding(toLength: 9, withPad: " ", startingAt: 0) + " " + (d.devnode ?? "-"))
        }
    }
}

struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write one tarball for a service ticket: versions, config, logs, sensors, self-test, calibration, metrics, recent captures.")
    @OptionGroup var options: ConnectionOptions
    @Option(help: "How many recent captures to include.") var captures: Int = 5
    @Option(name: .shortAndLong, help: "Where to write it (default: the name the daemon gives, in this folder).") var output: String?

    func run() async throws {
        let r = try await options.call(.serviceReport, ReportParams(captures: captures))
        guard let data = Data(base64Encoded: r.tarGzBase64) else { throw CLIError(message: "the daemon's report was not readable") }
        let path = output ?? r.name
        do { try data.write(to: URL(fileURLWithPath: path)) } catch {
            throw CLIError(message: "cannot write \(path): \(error.localizedDescription)")
        }
        if options.json {
            Output.json(WrittenReport(path: path, sizeBytes: data.count, contents: r.contents))
        } else {
            print("wrote \(path) (\(data.count) bytes, \(r.contents.count) files)")
        }
    }
}

struct Metrics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The daemon's counters: frames, CRC errors, gaps, drops, reconnects, scans, exposure, DAP.")
    @OptionGroup var options: ConnectionOptions
    @Flag(help: "Prometheus text format.") var prometheus = false

    func run() async throws {
        if prometheus {
            let r = try await options.call(.serviceMetrics, MetricsParams(format: .prometheus))
            print(r.text ?? "", terminator: "")
            return
        }
        let r = try await options.call(.serviceMetrics, MetricsParams())
        if options.json { Output.json(r); return }
        Output.table(Output.flattened(try JSONValue(encoding: r.metrics)))
    }
}

struct Log: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the firmware log.")
    @OptionGroup var options: ConnectionOptions
    @Option(help: "Byte offset to start at.") var offset: UInt32 = 0

    func run() async throws {
        var next = offset
        var all = ""
        for _ in 0..<64 {
            let r = try await options.call(.serviceLog, LogParams(offset: next, maxBytes: 4096))
            all += r.text
            if r.text.isEmpty || r.nextOffset == next { break }
            next = r.nextOffset
        }
        if options.json { Output.json(LogResult(nextOffset: next, text: all)) } else { print(all, terminator: "") }
    }
}

/// `dexa service report --json`: where the tarball went.
struct WrittenReport: Encodable {
    var path: String
    var sizeBytes: Int
    var contents: [String]
    enum CodingKeys: String, CodingKey { case path, contents, sizeBytes = "size_bytes" }
}
