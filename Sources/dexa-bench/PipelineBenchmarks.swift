import DXAcquisition
import DXDecomposition
import DXDevice
import DXProtocol
import DXSimulator
import DXTransport
import Foundation

/// `dexa-bench analyze`: end-to-end `dexa analyze` (the real binary, beside this one) on
/// captures of 20,000 and 80,000 lines × 512 channels: wall time and the child's peak memory.
/// `dexa-bench latency`: the live pipeline's latency while the embedded simulator streams at
/// ten times the device's maximum line rate, through the device session and scan runner.
enum PipelineBenchmarks {
    /// Writes a capture of dark, air and `lines` lines over `scene` (512 channels, 300 µm).
    static func writeCapture(path: String, role: CaptureScan.Role, phantom: Phantom, scene: any Scene, lines count: Int,
                             y0: Int32, step: Int32, period: UInt32, current: UInt32, passes: [(UInt32, UInt32)] = []) throws {
        var info = SimulatorConfiguration.standardInfo
        info.channels = 512
        info.pitchUm = 300
        var d = Detector(channels: 512, pitchUm: 300, seed: 7)
        let plans = BatchBenchmark.references(info, x: 200_000) + (passes.isEmpty ? [(period, current)] : passes).map {
            BatchBenchmark.Plan(role: role, region: nil, mode: .dual, xUm: 200_000, yStartUm: y0, lines: count, stepUm: step, periodUs: $0.0, currentUA: $0.1)
        }
        try BatchBenchmark.write(path: path, info: info, detector: &d, plans: plans, scene: scene, phantom: phantom, patient: nil, created: Date())
    }

    /// `dexa analyze` on captures of each of `sizes` lines (512 channels): wall time and the
    /// child's peak resident memory, measured in a child process of its own for each.
    static func analyze(sizes: [Int]) throws {
        let dir = NSTemporaryDirectory() + "dexa-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cal = dir + "/calibration.dxcap"
        let bench = PhantomScene(StandardPhantoms.bench)
        try writeCapture(path: cal, role: .calibration, phantom: StandardPhantoms.calibration, scene: bench, lines: 600,
                         y0: 295_000, step: 100, period: 0, current: 0, passes: [(50_000, 1000), (100_000, 3000)])
        let dexa = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("dexa").path
        var peaks: [Int: Double] = [:]
        for lines in sizes {
            let scan = dir + "/scan-\(lines).dxcap"
            try writeCapture(path: scan, role: .qc, phantom: Phantom(name: "ESP", rois: StandardPhantoms.esp.rois), scene: bench, lines: lines,
                             y0: 500_000, step: 10, period: 10_000, current: 3000)
            let size = (try FileManager.default.attributesOfItem(atPath: scan)[.size] as? Int) ?? 0
            // Each size in a child of its own, waited for with wait4, which gives that child's
            // own peak (getrusage(RUSAGE_CHILDREN) keeps the largest of all children so far).
            let outPath = dir + "/analyze-\(lines).json"
            let clock = ContinuousClock()
            let start = clock.now
            let (status, usage) = try spawn(dexa, ["analyze", "--calibration", cal, scan, "--json"], stdout: outPath)
            let wall = (clock.now - start).seconds
            guard status == 0 else { throw BenchError(message: "dexa analyze exited \(status)") }
            let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
            let peakMB = Double(usage.ru_maxrss) / 1024
            peaks[lines] = peakMB
            let result = text.split(separator: "\n").first { $0.hasPrefix("{") }.map(String.init) ?? ""
            print("dexa analyze: \(lines) lines × 512 channels (\(size / 1_000_000) MB capture), calibration of 2 × 600 lines")
            print(String(format: "%.2f s wall, %.1f MB peak resident, %.1f M pixels/s end to end", wall, peakMB, Double(lines * 512) / wall / 1e6))
            print("result: " + result)
            print("{\"analyze_s\": \(String(format: "%.3f", wall)), \"analyze_peak_mb\": \(String(format: "%.1f", peakMB)), \"lines\": \(lines), \"channels\": 512}")
            try? FileManager.default.removeItem(atPath: scan)
        }
        if let small = sizes.first.flatMap({ peaks[$0] }), let large = sizes.last.flatMap({ peaks[$0] }), sizes.count > 1 {
            print(String(format: "peak resident memory, %d lines against %d: %+.1f %%", sizes.last ?? 0, sizes.first ?? 0, (large / small - 1) * 100))
        }
    }

    /// Runs `path` with `arguments`, its standard output into `stdout`; its exit status and its
    /// own resource usage (wait4).
    static func spawn(_ path: String, _ arguments: [String], stdout: String) throws -> (Int32, rusage) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard spawned == 0 else { throw BenchError(message: "cannot start \(path): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        var usage = rusage()
        var waited = wait4(pid, &status, 0, &usage)
        while waited == -1 && errno == EINTR { waited = wait4(pid, &status, 0, &usage) }
        guard waited == pid else { throw BenchError(message: "wait4 failed for \(path)") }
        // WIFEXITED / WEXITSTATUS by hand (macros Swift does not import).
        let exited = status & 0x7F == 0
        return (exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F), usage)
    }

    static func latency() async throws {
        let speed = 10.0
        let clock = ScaledClock(speed: speed)
        let sim = EmbeddedSimulator(clock: clock, scene: PhantomScene(StandardPhantoms.bench))
        let run = Task { await sim.run() }
        defer { sim.shutdown(); run.cancel() }
        let session = DeviceSession(transport: sim.transport, clock: clock, commandTimeout: .seconds(5))
        let runner = ScanRunner(session: session, clock: clock)
        try await session.connect()
        guard let info = await session.info else { throw BenchError(message: "no GET_INFO") }
        for _ in 0..<200 where try await session.refreshStatus().state != .idle { try await Task.sleep(for: .milliseconds(5)) }
        let minPeriod = UInt32(clamping: info.minLinePeriodUs)
        // Calibrate from the simulator's phantom (the same CalibrationProcedure as service.calibrate,
        // fitted from simulated lines rather than through a device), then
        // stream a 2,000-line scan at the maximum line rate, ten times faster than real time.
        let geometry = ScanGeometry(channels: Int(info.channels), pitchUm: Int(info.pitchUm))
        // The calibration from the simulator's physics with this device's detector geometry
        // (fitted from simulated calibration scans, not from any table).
        var detector = Detector(channels: geometry.channels, pitchUm: geometry.pitchUm, seed: 3)
        let (_, calibration) = try DecomposeBenchmark.calibrate(&detector, geometry: geometry)
        let scan = ScanPlan(mode: .dual, xUm: 200_000, yStartUm: 500_000, lineCount: 2000, lineStepUm: 100, linePeriodUs: minPeriod,
                            tubeCurrentUA: 3000, linesPerFrame: 1, role: .qc)
        let plans = ScanPlan.references(xUm: 200_000, info: info) + [scan]
        let live = LiveSequenceAnalysis(calibration: calibration, geometry: geometry, rois: StandardPhantoms.esp.rois ?? [],
                                        scans: plans.map { .init(role: $0.role, configuration: $0.configuration(id: 0)) })
        let (outcomes, _) = try await runner.runSequence(plans, phantom: nil, onLines: { index, lines in live.lines(lines, scan: index) })
        guard case .success(let r) = await live.finish() else { throw BenchError(message: "no live result") }
        let rate = Double(info.maxLineRateHz) * speed
        print("live pipeline: \(r.lines) lines of \(info.channels) channels at \(Int(rate)) lines/s (10 × the DX-1's \(info.maxLineRateHz) Hz), one line per frame")
        print(String(format: "latency from the scan runner receiving a line to its decomposition: p50 %.1f µs, p99 %.1f µs; dropped %d; scan %@",
                     r.latencyP50 * 1e6, r.latencyP99 * 1e6, r.stages.map(\.dropped).reduce(0, +), outcomes.last?.result.rawValue ?? "?"))
        print("{\"latency_p50_us\": \(String(format: "%.1f", r.latencyP50 * 1e6)), \"latency_p99_us\": \(String(format: "%.1f", r.latencyP99 * 1e6)), \"lines_per_s\": \(Int(rate)), \"dropped\": \(r.stages.map(\.dropped).reduce(0, +))}")
    }
}

struct BenchError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
