import ArgumentParser
import DXControl
import DXDecomposition
import DXUSB
import Foundation

/// `dexa`: the technologist's and service engineer's command line.
public struct DexaCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dexa",
        abstract: "Drive the DX-1 densitometer through dexad.",
        subcommands: [Info.self, Status.self, Home.self, Move.self, Scan.self, Abort.self, Watch.self, Devices.self, Analyze.self, CaptureCommands.self, ExamCommands.self,
                      ServiceCommands.self, SelfTest.self, Sensors.self, Log.self])

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
            Foundation.exit(1)
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
        guard let d = r["device"] else { return }
        print("\(d["model"]?.stringValue ?? "?") \(d["serial"]?.stringValue ?? "?") firmware \(Output.number(d["fw_major"])).\(Output.number(d["fw_minor"])).\(Output.number(d["fw_patch"])) via \(r["transport"]?.stringValue ?? "?")")
        Output.table(d, keys: ["channels", "pitch_um", "energy_low_kev", "energy_high_kev", "max_line_rate_hz",
                               "travel_x_um", "travel_y_um", "air_zone_y_um", "watchdog_ms"])
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "State, interlocks, X-ray, position and link counters.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.deviceStatus)
        if options.json { Output.json(r); return }
        let open = Output.strings(r["interlocks_open"])
        print("state      \(r["state"]?.stringValue ?? "?")")
        print("X-ray      \(r["xray_on"] == .bool(true) ? "ON" : "off")")
        print("interlocks \(open.isEmpty ? "all closed" : "OPEN: " + open.joined(separator: ", "))")
        print("position   x \(Output.number(r["x_um"])) µm, y \(Output.number(r["y_um"])) µm, arm \(Output.number(r["arm_angle_deg"]))°")
        print("tube       \(Output.number(r["tube_temp_c"])) °C")
        if r["fault"]?.numberValue ?? 0 != 0 { print("fault      \(Output.number(r["fault"])) \(r["fault_text"]?.stringValue ?? "")") }
        if let link = r["link"] {
            print("link       \(Output.number(link["dataFrames"])) data frames, \(Output.number(link["dataGaps"])) gaps, \(Output.number(link["timeouts"])) timeouts")
        }
    }
}

struct Home: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Move the gantry to its home position.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.deviceHome)
        if options.json { Output.json(r) } else { print("homed: x \(Output.number(r["x_um"])) µm, y \(Output.number(r["y_um"])) µm, arm \(Output.number(r["arm_angle"]))") }
    }
}

struct Move: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Move the gantry (µm; arm angle in tenths of a degree).")
    @OptionGroup var options: ConnectionOptions
    @Option(name: .customLong("x"), help: "x in µm") var x: Int32
    @Option(name: .customLong("y"), help: "y in µm") var y: Int32
    @Option(name: .long, help: "arm angle, tenths of a degree (0 AP, 900 lateral)") var arm: Int16 = 0

    func run() async throws {
        let r = try await options.call(.deviceMove, .object(["x_um": .number(Double(x)), "y_um": .number(Double(y)), "arm_angle": .number(Double(arm))]))
        if options.json { Output.json(r) } else { print("moved: x \(Output.number(r["x_um"])) µm, y \(Output.number(r["y_um"])) µm, arm \(Output.number(r["arm_angle"]))") }
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
        let p = try JSONValue(encoding: params)
        let bar = ProgressBar()
        let showBar = !options.json
        let result: JSONValue
        do {
            result = try await options.run { connection in
                let progress = Task {
                    for await n in connection.notifications where n.method == "scan.progress" {
                        guard showBar, let v = n.params else { continue }
                        bar.draw(done: v["lines"]?.intValue ?? 0, total: v["planned_lines"]?.intValue ?? 0,
                                 rate: v["lines_per_s"]?.numberValue ?? 0, eta: v["eta_s"]?.numberValue ?? 0)
                    }
                }
                defer { progress.cancel() }
                return try await connection.call(ControlMethod.scanRun.rawValue, p)
            }
        } catch let e as CLIError {
            if showBar { bar.finish() }
            if options.json, let d = e.data { Output.json(d) }
            throw e
        }
        if showBar { bar.finish() }
        if options.json { Output.json(result); return }
        print("scan \(Output.number(result["scan_id"])) \(result["result"]?.stringValue ?? "?"): \(Output.number(result["lines"])) of \(Output.number(result["planned_lines"])) lines, \(Output.number(result["gaps"])) gaps")
        print("exposure \(Output.number(result["exposure_ms"])) ms, DAP \(String(format: "%.3f", result["dap_mgy_cm2"]?.numberValue ?? 0)) mGy·cm², X-ray \(result["xray_off"] == .bool(true) ? "off (verified)" : "NOT VERIFIED OFF")")
        if let c = result["capture"]?.stringValue { print("capture \(c)") }
    }
}

struct Abort: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Abort the running scan (X-rays off at once).")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.scanAbort)
        if options.json { Output.json(r); return }
        if let id = r["aborted"]?.intValue { print("aborted scan \(id)") } else { print("no scan was running") }
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
            _ = try await connection.call(ControlMethod.eventsSubscribe.rawValue)
            var seen = 0
            for await n in connection.notifications where n.method == "event" {
                guard let v = n.params else { continue }
                if json { Output.json(v) } else { print(Watch.describe(v)) }
                Output.flush()
                seen += 1
                if let limit, seen >= limit { break }
            }
        }
    }

    static func describe(_ v: JSONValue) -> String {
        let t = v["type"]?.stringValue ?? "?"
        let stamp = Date().formatted(date: .omitted, time: .standard)
        switch t {
        case "state": return "\(stamp) state \(v["old"]?.stringValue ?? "?") -> \(v["new"]?.stringValue ?? "?")"
        case "interlocks":
            let open = Output.strings(v["open"])
            return "\(stamp) interlocks \(open.isEmpty ? "all closed" : "OPEN: " + open.joined(separator: ", "))"
        case "fault": return "\(stamp) FAULT \(Output.number(v["code"])) \(v["fault"]?.stringValue ?? ""): \(v["message"]?.stringValue ?? "")"
        case "scan_complete": return "\(stamp) scan \(Output.number(v["scan_id"])) complete: \(Output.number(v["lines"])) lines, \(Output.number(v["exposure_ms"])) ms"
        case "scan_aborted": return "\(stamp) scan \(Output.number(v["scan_id"])) ABORTED: \(v["reason"]?.stringValue ?? "")"
        default:
            var o = v
            if case .object(var d) = o { d.removeValue(forKey: "type"); o = .object(d) }
            return "\(stamp) \(t) \(o)"
        }
    }
}

struct SelfTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "selftest", abstract: "Run the device's self-test.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.serviceSelftest)
        if options.json { Output.json(r); return }
        guard case .array(let items)? = r["items"] else { return }
        for i in items {
            let comp = (i["component"]?.stringValue ?? "?").padding(toLength: 16, withPad: " ", startingAt: 0)
            print("\(comp) \(i["result"]?.stringValue ?? "?")  value \(Output.number(i["value"]))  code \(Output.number(i["code"]))")
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
                Output.table(r)
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
        let r = try await options.call(.serviceCalibrate, .object(["phantom": .string(phantom)]))
        if options.json { Output.json(r); return }
        print("calibrated from \(Output.number(r["cells"])) cells: residual bone \(String(format: "%.4f", r["residual_hydroxyapatite_g_cm2"]?.numberValue ?? .nan)) g/cm², soft \(String(format: "%.3f", r["residual_soft_tissue_g_cm2"]?.numberValue ?? .nan)) g/cm²")
        print("calibration \(r["calibration"]?.stringValue ?? "?") from capture \(r["capture"]?.stringValue ?? "?")")
    }
}

struct Reset: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reset the unit (it leaves the bus and comes back); waits until it is back.")
    @OptionGroup var options: ConnectionOptions

    func run() async throws {
        let r = try await options.call(.serviceReset)
        if options.json { Output.json(r) } else {
            print("\(r["serial"]?.stringValue ?? "?") back after \(Output.number(r["after_ms"])) ms, \(r["state"]?.stringValue ?? "?")")
        }
    }
}

struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the DX-1 units attached to this machine's USB (bus, address, serial, firmware).")
    @Flag(help: "Print JSON for scripts.") var json = false
    @Option(help: "USB vendor id (hex).") var vendor: String = "1209"
    @Option(help: "USB product id (hex).") var product: String = "de8a"

    func run() async throws {
        guard let v = UInt16(vendor, radix: 16), let p = UInt16(product, radix: 16) else { throw ValidationError("ids are 4 hex digits") }
        let found = UdevDiscovery.enumerate(USBDeviceMatch(vendorID: v, productID: p))
        if json {
            Output.json((try? JSONValue(encoding: found)) ?? .array([]))
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
        let r = try await options.call(.serviceReport, .object(["captures": .number(Double(captures))]))
        guard let b64 = r["tar_gz_base64"]?.stringValue, let data = Data(base64Encoded: b64) else {
            throw CLIError(message: "the daemon's report was not readable")
        }
        let path = output ?? (r["name"]?.stringValue ?? "dexa-report.tar.gz")
        do { try data.write(to: URL(fileURLWithPath: path)) } catch {
            throw CLIError(message: "cannot write \(path): \(error.localizedDescription)")
        }
        if options.json {
            Output.json(.object(["path": .string(path), "size": .number(Double(data.count)), "contents": r["contents"] ?? .array([])]))
        } else {
            print("wrote \(path) (\(data.count) bytes, \(Output.strings(r["contents"]).count) files)")
        }
    }
}

struct Metrics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The daemon's counters: frames, CRC errors, gaps, drops, reconnects, scans, exposure, DAP.")
    @OptionGroup var options: ConnectionOptions
    @Flag(help: "Prometheus text format.") var prometheus = false

    func run() async throws {
        if prometheus {
            let r = try await options.call(.serviceMetrics, .object(["format": .string("prometheus")]))
            print(r["text"]?.stringValue ?? "", terminator: "")
            return
        }
        let r = try await options.call(.serviceMetrics)
        if options.json { Output.json(r); return }
        var flat = r
        if case .object(var o) = r, case .object(let link)? = o["link"] {
            o.removeValue(forKey: "link")
            for (k, v) in link { o["link." + k] = v }
            flat = .object(o)
        }
        Output.table(flat)
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
            let r = try await options.call(.serviceLog, .object(["offset": .number(Double(next)), "max_bytes": .number(4096)]))
            let text = r["text"]?.stringValue ?? ""
            all += text
            let n = UInt32(r["next_offset"]?.intValue ?? Int(next))
            if text.isEmpty || n == next { break }
            next = n
        }
        if options.json { Output.json(.object(["text": .string(all), "next_offset": .number(Double(next))])) } else { print(all, terminator: "") }
    }
}
