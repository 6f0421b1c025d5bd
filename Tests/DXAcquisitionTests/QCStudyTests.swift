import DXAcquisition
import DXClinical
import DXDecomposition
import DXProtocol
import DXReport
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// Phantom QC over simulated days (docs/qc.md, "Studies"): each day's QC scan is the daemon's
/// (`QCRun`'s plans: dark, air, the pass over the ESP phantom's ROIs) read through the
/// simulator's detector and physics and measured with the unit's calibration, made once at
/// installation; the rules judge the history on injected dates. The unit's faults are the
/// simulator's (`SpectralShift`: the tube voltage or a window threshold off where the
/// calibration saw it; a tube output step), never a change of the numbers.
@Suite("Phantom QC on simulated scans")
struct QCStudyTests {
    static let info = SimulatorConfiguration.standardInfo
    static let day0 = Date(timeIntervalSince1970: 1_780_000_000)

    /// A unit: its detector, its calibration, and its QC history so far.
    struct Unit: Sendable {
        var scanner: TableScanner
        var history: [QualityControl.Measurement] = []
        let rules: QualityControl.Rules
        let seed: UInt64

        init(seed: UInt64, physics: PhysicsModel = .kramers, baselineScans: Int = 20) throws {
            scanner = TableScanner(seed: seed, physics: physics)
            if physics == .cdte {
                // The second model as far as the host corrects it: without pile-up and scatter,
                // whose calibration the acceptance rule refuses (issue 10; docs/physics.md), so
                // that the daemon would have no QC at all.
                var p = CdTeParameters()
                p.pileUp = false
                p.scatterPerGcm2 = 0
                scanner.detector = Detector(channels: 144, pitchUm: 1000, seed: seed, model: .cdte,
                                            physics: CdTeLinePhysics(channels: 144, pitchUm: 1000, seed: seed, parameters: p))
            }
            try scanner.calibrate()
            // The daemon stores only an accepted calibration; QC needs one.
            let verdict = try #require(scanner.calibration?.verdict)
            #expect(verdict.accepted, "\(verdict)")
            var r = QualityControl.Rules()
            r.baselineScans = baselineScans
            rules = r
            self.seed = seed
        }

        /// One QC scan, measured as the daemon measures it.
        mutating func scan(day: Int, repeat k: Int = 0) async throws -> [String: Double] {
            let phantom = StandardPhantoms.esp
            var plans = try QCRun.plans(phantom: phantom, info: QCStudyTests.info)
            guard let calibration = scanner.calibration else { throw QCRun.Failure.invalid("not calibrated") }
            scanner.detector.reseedNoise(seed &* 1_000_003 &+ UInt64(bitPattern: Int64(day)) &* 17 &+ UInt64(k))
            // The scout, and the pass's current from it, as the daemon does.
            let scout = QCRun.scoutPlans(plans).enumerated().map { i, plan in
                let c = plan.configuration(id: UInt32(i + 1))
                return scanner.lines(PhantomScene(phantom), mode: c.mode, c)
            }
            (plans, _) = try QCRun.exposed(plans, darkLines: scout[0], scoutLines: scout[1], unmixing: calibration.unmixing, boneNoise: calibration.boneNoise)
            let live = LiveSequenceAnalysis(calibration: calibration, geometry: scanner.geometry, rois: phantom.rois ?? [],
                                            scans: plans.map { .init(role: $0.role, configuration: $0.configuration(id: 0)) })
            for (i, plan) in plans.enumerated() {
                let c = plan.configuration(id: UInt32(i + 1))
                live.lines(scanner.lines(PhantomScene(phantom), mode: c.mode, c), scan: i)
            }
            switch await live.finish() {
            case .success(let result): return try QCRun.measurement(result, phantom: phantom)
            case .failure(let e): throw e
            }
        }

        /// The day's QC as a site runs it: a scan, and at once a repeat when the rules ask for
        /// one. Returns the state after the day.
        mutating func qcDay(_ day: Int) async throws -> QualityControl.State {
            var state = QualityControl.evaluate(history, rules: rules)
            for k in 0..<2 {
                let bmd = try await scan(day: day, repeat: k)
                history.append(.init(id: Int64(history.count + 1), at: QCStudyTests.day0.addingTimeInterval(Double(day) * 86_400 + Double(k) * 600),
                                     bmdGCm2: bmd))
                state = QualityControl.evaluate(history, rules: rules)
                if state.condition != .repeatRequired { break }
            }
            return state
        }
    }

    /// % change of each region's BMD when the spectrum moves by `shift`: the mean of four scans
    /// each way on a copy of the unit (its own history untouched).
    static func sensitivity(of unit: Unit, to shift: SpectralShift) async throws -> [String: Double] {
        var probe = unit
        var base: [String: Double] = [:], moved: [String: Double] = [:]
        for d in 0..<4 { for (k, v) in try await probe.scan(day: -100 - d) { base[k, default: 0] += v / 4 } }
        probe.scanner.detector.shiftSpectrum(to: shift)
        for d in 0..<4 { for (k, v) in try await probe.scan(day: -100 - d) { moved[k, default: 0] += v / 4 } }
        return Dictionary(uniqueKeysWithValues: base.map { ($0.key, ((moved[$0.key] ?? 0) / $0.value - 1) * 100) })
    }

    /// What a scenario found: the first day the rules asked for something, and what.
    struct Outcome: Sendable, CustomStringConvertible {
        var label: String
        var days: Int
        var repeats = 0
        var failures = 0
        var warnings = 0
        /// First day (from the fault) a repeat, failure or warning was raised; and the first failure.
        var firstAlarm: Int?
        var firstFailure: Int?
        var alarm = ""
        /// The fault's true size (% of L2's BMD) when the alarm was raised.
        var sizeAtAlarm: Double?
        /// The unit's whole QC history at the end (for the charts).
        var history: [QualityControl.Measurement] = []

        var description: String {
            "\(label): \(days) days, \(repeats) repeats, \(failures) failures, \(warnings) warnings"
                + (firstAlarm.map { "; first alarm on day \($0) of the fault (\(alarm))" } ?? "")
                + (firstFailure.map { ", failed on day \($0)" } ?? "")
                + (sizeAtAlarm.map { String(format: ", the fault then %.2f %%", $0) } ?? "")
        }
    }

    /// Days `from`..<`to` of a unit whose spectrum is `shift(d)` on day d (d from the fault's
    /// start `faultDay`), with the tube output `output(d)`.
    static func run(_ unit: inout Unit, label: String, days: Range<Int>, faultDay: Int, shift: (Int) -> SpectralShift,
                    output: (Int) -> Double = { _ in 1 }, size: (Int) -> Double = { _ in 0 }, stopAtFailure: Bool = false) async throws -> Outcome {
        var outcome = Outcome(label: label, days: 0)
        for day in days {
            unit.scanner.detector.shiftSpectrum(to: shift(day - faultDay))
            unit.scanner.outputFactor = output(day - faultDay)
            let before = unit.history.count
            let state = try await unit.qcDay(day)
            outcome.days += 1
            let today = state.points.suffix(unit.history.count - before)
            outcome.repeats += today.filter { $0.verdict == .repeatRequired }.count
            outcome.failures += today.filter { $0.verdict == .fail }.count
            let warned = !state.warnings.isEmpty
            if warned { outcome.warnings += 1 }
            let alarmed = today.contains { $0.verdict == .repeatRequired || $0.verdict == .fail } || warned
            if alarmed, outcome.firstAlarm == nil, day >= faultDay {
                outcome.firstAlarm = day - faultDay
                outcome.alarm = (today.flatMap(\.reasons) + state.warnings).joined(separator: "; ")
                outcome.sizeAtAlarm = size(day - faultDay)
            }
            if today.contains(where: { $0.verdict == .fail }), outcome.firstFailure == nil, day >= faultDay {
                outcome.firstFailure = day - faultDay
                if stopAtFailure { break }
            }
        }
        outcome.history = unit.history
        return outcome
    }

    /// One unit's study: the baseline (20 days), then three futures of the same unit from day
    /// 20: in control to day 100 (the tube's output 10 % down from day 60, which the air scan
    /// must cancel); a step of the window edge that moves L2 by 2 % on day 40; a drift of the
    /// tube voltage that moves L2 by 0.1 % a day from day 30. The fault sizes come from this
    /// unit's own measured sensitivity, not from a constant.
    static func study(seed: UInt64, physics: PhysicsModel = .kramers) async throws -> Study {
        var unit = try Unit(seed: seed, physics: physics)
        let baseline = try await run(&unit, label: "baseline", days: 0..<20, faultDay: 1000, shift: { _ in SpectralShift() })
        #expect(QualityControl.evaluate(unit.history, rules: unit.rules).condition == .inControl, "\(baseline)")
        let perKeV = try await sensitivity(of: unit, to: SpectralShift(highThresholdKeV: 1))["L2"] ?? 0
        let perKV = try await sensitivity(of: unit, to: SpectralShift(kVp: 2))["L2"].map { $0 / 2 } ?? 0
        let step = SpectralShift(highThresholdKeV: -2 / perKeV)  // L2 2 % up or down: the sign is the physics'
        let drift = SpectralShift(kVp: 0.1 / abs(perKV))         // L2 0.1 % a day
        // The in-control future on the second core while the two faults run on this one.
        let start = unit
        async let control = future(start, label: "in control", days: 20..<100, faultDay: 60, shift: { _ in SpectralShift() },
                                   output: { $0 >= 0 ? 0.9 : 1 })
        let s = try await future(start, label: "2 % step", days: 20..<60, faultDay: 40, shift: { $0 >= 0 ? step : SpectralShift() },
                                 size: { $0 >= 0 ? 2 : 0 }, stopAtFailure: true)
        let d = try await future(start, label: "0.1 %/day drift", days: 20..<80, faultDay: 30, shift: { $0 >= 0 ? drift * Double($0) : SpectralShift() },
                                 size: { Double(max(0, $0)) * 0.1 }, stopAtFailure: true)
        return (try await control, s, d, (perKeV, perKV))
    }

    static func future(_ unit: Unit, label: String, days: Range<Int>, faultDay: Int, shift: @escaping @Sendable (Int) -> SpectralShift,
                       output: @escaping @Sendable (Int) -> Double = { _ in 1 }, size: @escaping @Sendable (Int) -> Double = { _ in 0 },
                       stopAtFailure: Bool = false) async throws -> Outcome {
        var u = unit
        return try await run(&u, label: label, days: days, faultDay: faultDay, shift: shift, output: output, size: size, stopAtFailure: stopAtFailure)
    }

    typealias Study = (control: Outcome, step: Outcome, drift: Outcome, sensitivity: (high: Double, kVp: Double))

    static func report(_ seed: UInt64, _ physics: PhysicsModel, _ r: Study) {
        print(String(format: "QC study unit %llu (%@): L2 %+.2f %%/keV of the window edge, %+.2f %%/kV", seed, physics.rawValue, r.sensitivity.high, r.sensitivity.kVp))
        for o in [r.control, r.step, r.drift] { print("  \(o)") }
        // The in-control future's figures: the baseline's CV, and the mean reading before and
        // after the tube's output step (day 60), in % of the baseline mean.
        let history = r.control.history
        guard let baseline = try? QualityControl.baseline(from: Array(history.prefix(20)), rules: QualityControl.Rules()) else { return }
        let day = { (m: QualityControl.Measurement) in Int((m.at.timeIntervalSince(day0) / 86_400).rounded(.down)) }
        for (name, b) in baseline.regions.sorted(by: { $0.key < $1.key }) {
            let mean = { (days: Range<Int>) -> Double in
                let v = history.filter { days.contains(day($0)) }.compactMap { $0.bmdGCm2[name] }
                return (v.reduce(0, +) / Double(max(v.count, 1)) / b.meanGCm2 - 1) * 100
            }
            print(String(format: "  %@: baseline %.4f g/cm², CV %.2f %%; days 20-59 %+.2f %%, days 60-99 (output -10 %%) %+.2f %%",
                         name, b.meanGCm2, b.sdGCm2 / b.meanGCm2 * 100, mean(20..<60), mean(60..<100)))
        }
    }

    /// The requirement (issue 13): 100 days in control without a lockout or a false failure
    /// (the output step included; a repeat that passes at once is no lockout); a 2 % step failed within 2 days; a 0.1 %/day drift raising
    /// a failure or warning before it reaches 1.5 %.
    static func check(_ r: Study) {
        // A repeat asked and passed at once is the rule working (a result 2.7 SD out happens on
        // a region whose CV is 0.56 %); a failure would lock patients out.
        #expect(r.control.failures == 0 && r.control.repeats <= 2, "\(r.control)")
        #expect(r.step.firstFailure.map { $0 <= 1 } == true, "\(r.step)")
        #expect(r.drift.firstAlarm != nil && (r.drift.sizeAtAlarm ?? .infinity) < 1.5, "\(r.drift)")
    }

    @Test func aHundredDaysInControlAStepAndADrift() async throws {
        let r = try await Self.study(seed: 7)
        Self.report(7, .kramers, r)
        Self.check(r)
        // The charts of the drift and of 100 days in control, for docs/qc.md.
        let dir = ProcessInfo.processInfo.environment["DEXA_REPORT_EXAMPLE"] ?? FileManager.default.temporaryDirectory.path
        for (name, outcome) in [("qc-chart-drift", r.drift), ("qc-chart-in-control", r.control)] {
            let state = QualityControl.evaluate(outcome.history, rules: QualityControl.Rules())
            let words = state.condition == .inControl ? "in control" : "FAILED\(state.condition == .drifted ? ": drift" : "")"
            let input = QCChart.Input(device: "simulated DX-1, unit 7 (kramers)", state: "\(outcome.label) (state: \(words))", points: state.points,
                                      baseline: state.baseline, rules: QualityControl.Rules(), since: "installation (simulated days)")
            let path = dir + "/\(name).png"
            try QCChart.png(input, to: path)
            #expect(FileManager.default.fileExists(atPath: path))
        }
    }

    /// The documented run (docs/qc.md): DEXA_QC_STUDY=N units of each physics model.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["DEXA_QC_STUDY"] != nil))
    func manyUnits() async throws {
        let n = UInt64(ProcessInfo.processInfo.environment["DEXA_QC_STUDY"].flatMap { Int($0) } ?? 5)
        for physics in (ProcessInfo.processInfo.environment["DEXA_QC_PHYSICS"].flatMap(PhysicsModel.init(rawValue:)).map { [$0] } ?? PhysicsModel.allCases) {
            for seed in 100..<(100 + n) {
                let r = try await Self.study(seed: seed, physics: physics)
                Self.report(seed, physics, r)
                Self.check(r)
            }
        }
    }

}
