import DXAcquisition
import DXDecomposition
import DXProtocol
import DXSimulator
import DXTransport
import Foundation

/// `dexa-bench batch`: `dexa reanalyze` (the real binary, beside this one) over an archive of
/// simulated exam captures, on 1 job and on as many as the machine has cores: captures per
/// second and the speed-up (issue 18).
///
/// The archive: one calibration capture (the daemon's procedure: dark, air, the low-rate air and
/// every pass of `CalibrationProcedure` over the calibration phantom) and `captures` AP spine
/// captures of different patients (`PatientVariety`), each with its dark and air scans and the
/// standard protocol's site (220 lines of 1 mm at 1 s and 0.4 mA) on the DX-1's 144 channels.
enum BatchBenchmark {
    struct Plan {
        var role: CaptureScan.Role
        var region: CaptureScan.Region?
        var mode: ScanMode
        var xUm: Int32, yStartUm: Int32, lines: Int, stepUm: Int32, periodUs: UInt32, currentUA: UInt32
    }

    /// Writes one capture of `plans` over `scene`, as the daemon's scan runner records one:
    /// each CONFIGURE_SCAN as sent, the lines in data frames of 16.
    static func write(path: String, info: DeviceInfo, detector d: inout Detector, plans: [Plan], scene: any Scene,
                      phantom: Phantom?, patient: CapturePatient?, created: Date) throws {
        let header = CaptureHeader(device: info, created: created,
                                   scans: plans.enumerated().map { CaptureScan(scanID: UInt32($0.offset + 1), role: $0.element.role, region: $0.element.region) },
                                   phantom: phantom, patient: patient)
        let writer = try CaptureWriter(path: path, header: header, clock: ContinuousClock())
        defer { writer.close() }
        var seq: UInt32 = 1
        for (k, p) in plans.enumerated() {
            let id = UInt32(k + 1)
            let config = ScanConfiguration(scanID: id, mode: p.mode, xUm: p.xUm, yStartUm: p.yStartUm, lineCount: UInt32(p.lines), lineStepUm: p.stepUm,
                                           linePeriodUs: p.periodUs, tubeCurrentUA: p.currentUA, linesPerFrame: 16)
            try writer.record(.commandOut, Frame(kind: .command, seq: seq, payload: Command.configureScan(config).payload).encoded())
            seq += 1
            var batch: [ScanLine] = []
            for i in 0..<p.lines {
                let y = p.yStartUm + Int32(i) * p.stepUm
                let r = d.readLine(mode: p.mode, xUm: p.xUm, yUm: y, periodUs: p.periodUs, currentUA: p.currentUA, outputFactor: 1,
                                   scene: p.role == .dark || p.role == .air ? EmptyTable() : scene)
                var flags: LineFlags = p.mode == .dark ? [] : [.xrayOn]
                if r.saturated { flags.insert(.saturated) }
                batch.append(ScanLine(index: UInt32(i), yUm: y, xUm: p.xUm, tUs: UInt64(i) * UInt64(p.periodUs), flags: flags, samples: r.samples))
                if batch.count == 16 || i == p.lines - 1 {
                    let frame = DataFrame(scanID: id, firstLine: batch[0].index, channels: UInt16(info.channels), lines: batch)
                    try writer.record(.dataIn, Frame(kind: .data, seq: seq, payload: frame.payload).encoded())
                    seq += 1
                    batch = []
                }
            }
        }
    }

    static func references(_ info: DeviceInfo, x: Int32) -> [Plan] {
        ScanPlan.references(xUm: x, info: info).map { Plan(role: $0.role, region: nil, mode: $0.mode, xUm: x, yStartUm: $0.yStartUm, lines: Int($0.lineCount),
                                                           stepUm: $0.lineStepUm, periodUs: $0.linePeriodUs, currentUA: $0.tubeCurrentUA) }
    }

    /// Writes an archive into `dir`: `0000-calibration.dxcap` and, for each of `patients`
    /// patients (`PatientVariety` seeds 1…N), one capture per site of `sites` (the standard
    /// protocol's scan, in the exposure mode its scout chooses, the lateral spine seen from the
    /// side). Returns the calibration capture and the patients' captures, in order.
    static func writeArchive(dir: String, patients count: Int, sites: [Site]) throws -> (calibration: String, captures: [String]) {
        let info = SimulatorConfiguration.standardInfo
        let made = Date(timeIntervalSince1970: 1_780_000_000)
        var detector = Detector(channels: Int(info.channels), pitchUm: Int(info.pitchUm), seed: 11)
        guard let procedure = CalibrationProcedure(phantom: StandardPhantoms.calibration, travelXUm: info.travelXUm),
              let firstX = procedure.passes.first?.xUm else { throw BenchError(message: "no calibration procedure") }
        let low = ScanPlan.lowRateAir(xUm: firstX, info: info)
        let calibrationPlans = references(info, x: firstX)
            + [Plan(role: .air, region: nil, mode: .dual, xUm: firstX, yStartUm: low.yStartUm, lines: Int(low.lineCount), stepUm: low.lineStepUm,
                    periodUs: low.linePeriodUs, currentUA: low.tubeCurrentUA)]
            + procedure.passes.map { Plan(role: .calibration, region: nil, mode: .dual, xUm: $0.xUm, yStartUm: $0.yStartUm, lines: Int($0.lineCount),
                                          stepUm: $0.lineStepUm, periodUs: $0.linePeriodUs, currentUA: $0.tubeCurrentUA) }
        let calibration = dir + "/0000-calibration.dxcap"
        try write(path: calibration, info: info, detector: &detector, plans: calibrationPlans,
                  scene: PhantomScene(StandardPhantoms.calibration), phantom: StandardPhantoms.calibration, patient: nil, created: made)
        var captures: [String] = []
        for k in 1...count {
            let patient = PatientScene(PatientVariety.patient(seed: UInt64(k)))
            for (n, region) in sites.enumerated() {
                guard let site = ExamProtocol.standard.scan(region) else { throw BenchError(message: "no \(region.rawValue) in the standard protocol") }
                var d = Detector(channels: Int(info.channels), pitchUm: Int(info.pitchUm), seed: 11)
                d.reseedNoise(UInt64(1000 + 10 * k + n))
                // The exam's scout and exposure mode: thin patients saturate at the standard current.
                let scene = patient.projection(armAngleX10: site.armAngleX10)
                let standard = ScanConfiguration(scanID: 0, mode: .dual, xUm: site.xUm, yStartUm: site.yStartUm, lineCount: site.lines,
                                                 lineStepUm: site.lineStepUm, linePeriodUs: site.linePeriodUs, tubeCurrentUA: site.tubeCurrentUA, linesPerFrame: 1)
                let scout = ExposureModeChooser.scout(of: standard)
                func lines(_ c: ScanConfiguration, _ mode: ScanMode, _ scene: any Scene) -> [ScanLine] {
                    DecomposeBenchmark.lines(&d, scene, mode: mode, x: c.xUm, y0: c.yStartUm, y1: c.yStartUm + Int32(c.lineCount) * c.lineStepUm,
                                             step: c.lineStepUm, period: c.linePeriodUs, current: c.tubeCurrentUA)
                }
                var darkConfig = standard
                darkConfig.lineCount = 50
                darkConfig.linePeriodUs = 10_000
                let dark = try DarkReference(lines: lines(darkConfig, .dark, EmptyTable()))
                let choice = ExposureModeChooser().choose(scout: lines(scout, .dual, scene), scoutPeriodUs: scout.linePeriodUs, scoutCurrentUA: scout.tubeCurrentUA,
                                                          dark: dark, periodUs: site.linePeriodUs, currentUA: site.tubeCurrentUA, bmi: nil)
                d.reseedNoise(UInt64(2000 + 10 * k + n))
                let plans = references(info, x: site.xUm) + [Plan(role: .patient, region: region, mode: .dual, xUm: site.xUm, yStartUm: site.yStartUm,
                                                                  lines: Int(site.lines), stepUm: site.lineStepUm, periodUs: site.linePeriodUs,
                                                                  currentUA: choice.current(standard: site.tubeCurrentUA))]
                let path = dir + String(format: "/%04d-%@.dxcap", k, region.rawValue)
                try write(path: path, info: info, detector: &d, plans: plans, scene: scene, phantom: nil,
                          patient: CapturePatient(sex: "female", birthDate: "1955-03-14"), created: made.addingTimeInterval(Double(60 * k + n)))
                captures.append(path)
            }
        }
        return (calibration, captures)
    }

    /// `keep`: write the archive there and leave it (to look at, or to run `dexa reanalyze` on).
    static func run(captures count: Int, keep: String? = nil) throws {
        let dir = keep ?? NSTemporaryDirectory() + "dexa-bench-batch-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { if keep == nil { try? FileManager.default.removeItem(atPath: dir) } }
        _ = try writeArchive(dir: dir, patients: count, sites: [.apSpine])
        let info = SimulatorConfiguration.standardInfo
        let dexa = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("dexa").path
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var rates: [Int: Double] = [:]
        for jobs in Array(Set([1, cores])).sorted() {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: dexa)
            p.arguments = ["reanalyze", "--json", "--jobs", String(jobs), dir]
            let out = Pipe()
            p.standardOutput = out
            let clock = ContinuousClock(), start = clock.now
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            let d = clock.now - start
            let wall = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            let lines = text.split(separator: "\n")
            let ok = lines.filter { $0.contains("\"type\":\"capture\"") && $0.contains("\"ok\":true") }.count
            guard p.terminationStatus == 0, ok == count else {
                throw BenchError(message: "dexa reanalyze --jobs \(jobs) exited \(p.terminationStatus) with \(ok) of \(count) captures analysed")
            }
            rates[jobs] = Double(count) / wall
            print(String(format: "dexa reanalyze, %d AP spine captures (220 lines × %d channels) and one calibration, %d job%@: %.2f s, %.2f captures/s",
                         count, info.channels, jobs, jobs == 1 ? "" : "s", wall, Double(count) / wall))
        }
        let one = rates[1] ?? 0, all = rates[cores] ?? one
        print(String(format: "speed-up on %d cores: %.2f×", cores, all / max(one, 1e-9)))
        print("{\"batch_captures\": \(count), \"batch_per_s_1\": \(String(format: "%.3f", one)), \"batch_per_s_\(cores)\": \(String(format: "%.3f", all)), \"cores\": \(cores)}")
    }
}
