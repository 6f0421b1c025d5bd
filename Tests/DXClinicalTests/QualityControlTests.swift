import DXClinical
import Foundation
import Testing

/// The QC rules on hand-built histories with known answers: the baseline's arithmetic, the
/// Shewhart limits at their boundary, the repeat, the CUSUM against Montgomery's worked
/// example, the run warning; then simulated years of a phantom: in control, a step, a drift.
@Suite("Quality control rules")
struct QualityControlTests {
    typealias QC = QualityControl
    static let day0 = Date(timeIntervalSince1970: 1_780_000_000)

    static func results(_ values: [[String: Double]], from first: Int64 = 1, hoursApart: Double = 24) -> [QC.Measurement] {
        values.enumerated().map { i, v in QC.Measurement(id: first + Int64(i), at: day0.addingTimeInterval(Double(i) * hoursApart * 3600), bmdGCm2: v) }
    }

    static func rules(baseline: Int = 10) -> QC.Rules {
        var r = QC.Rules()
        r.baselineScans = baseline
        return r
    }

    /// Ten scans alternating 0.99 and 1.01: mean 1.000, SD (n − 1) = 0.01 × √(10/9) = 0.010541.
    static let tenScans: [[String: Double]] = (0..<10).map { ["L1-L4": $0 % 2 == 0 ? 0.99 : 1.01] }

    @Test func theBaselineIsTheMeanAndSampleSD() throws {
        let b = try QC.baseline(from: Self.results(Self.tenScans), rules: Self.rules())
        let region = try #require(b.regions["L1-L4"])
        #expect(abs(region.meanGCm2 - 1.0) < 1e-12)
        #expect(abs(region.sdGCm2 - 0.01 * (10.0 / 9).squareRoot()) < 1e-12)
        #expect(region.scans == 10 && b.measurementIDs == Array(1...10))
    }

    @Test func aBaselineThatCannotBeMadeSaysWhy() {
        let rules = Self.rules()
        #expect(throws: QC.BaselineError.tooFew(have: 9, need: 10)) { try QC.baseline(from: Self.results(Array(Self.tenScans.prefix(9))), rules: rules) }
        var other = Self.tenScans
        other[4] = ["L1": 1.0]
        #expect(throws: QC.BaselineError.self) { try QC.baseline(from: Self.results(other), rules: rules) }
        let flat = [[String: Double]](repeating: ["L1-L4": 1.0], count: 10)
        #expect(throws: QC.BaselineError.noSpread("L1-L4")) { try QC.baseline(from: Self.results(flat), rules: rules) }
        var nan = Self.tenScans
        nan[2] = ["L1-L4": .nan]
        #expect(throws: QC.BaselineError.self) { try QC.baseline(from: Self.results(nan), rules: rules) }
        // Too few: patients wait, and the state says how many are still needed.
        let state = QC.evaluate(Self.results(Array(Self.tenScans.prefix(4))), rules: rules)
        #expect(state.condition == .baselineIncomplete && state.blocksPatients)
        #expect(state.reason == "the baseline needs 10 phantom scans; 4 so far")
    }

    @Test func rulesOutOfRangeAreNamed() {
        var r = QC.Rules()
        #expect(r.problem == nil)
        r.baselineScans = 9
        #expect(r.problem?.contains("baseline_scans") == true)
        r = QC.Rules()
        r.limitPercent = 0
        #expect(r.problem?.contains("limit_percent") == true)
        r = QC.Rules()
        r.cusumH = .nan
        #expect(r.problem?.contains("cusum_h") == true)
    }

    /// ±1.5 % of the mean 1.000: 1.015 is inside (the limit is "outside ±1.5 %"), 1.0151 and
    /// 0.9849 are outside. Outside once: a repeat; outside again: a failure; inside: back in
    /// control.
    @Test func theLimitsTheRepeatAndTheFailure() {
        let rules = Self.rules()
        func after(_ tail: [Double]) -> QC.State {
            QC.evaluate(Self.results(Self.tenScans + tail.map { ["L1-L4": $0] }), rules: rules)
        }
        #expect(after([1.015]).condition == .inControl)
        #expect(after([0.985]).condition == .inControl)
        let once = after([1.0151])
        #expect(once.condition == .repeatRequired && once.blocksPatients)
        #expect(once.points.last?.verdict == .repeatRequired && once.reason?.contains("L1-L4 +1.51 % from the baseline (limit ±1.5 %)") == true)
        let twice = after([1.0151, 0.9849])
        #expect(twice.condition == .failed && twice.points.last?.verdict == .fail)
        let cleared = after([1.0151, 1.002])
        #expect(cleared.condition == .inControl && cleared.points.last?.verdict == .pass && !cleared.blocksPatients)
        let failedThenPassed = after([1.02, 1.02, 1.001])
        #expect(failedThenPassed.condition == .inControl)
        // A region the scan did not measure is outside.
        let missing = QC.evaluate(Self.results(Self.tenScans + [["L1": 1.0]]), rules: rules)
        #expect(missing.condition == .repeatRequired && missing.reason?.contains("L1-L4: not measured") == true)
    }

    /// Montgomery, Introduction to Statistical Quality Control, Example 9.1 (Table 9.1): μ₀ = 10,
    /// σ = 1, k = 0.5, h = 5; 20 observations from N(10, 1), then 10 from N(11, 1). C⁺ is 0 at
    /// period 22 and grows to 5.28 at period 29, the first above h: the signal.
    @Test func theCUSUMReproducesMontgomerysExample() {
        let x = [9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34, 9.03, 11.47, 10.51, 9.40, 10.08,
                 9.37, 10.62, 10.31, 8.52, 10.84, 10.90, 9.33, 12.29, 11.50, 10.60, 11.08, 10.38, 11.62, 11.31, 10.52]
        var c = (high: 0.0, low: 0.0)
        var high: [Double] = [], low: [Double] = []
        for v in x {
            c = QC.cusumStep(high: c.high, low: c.low, z: (v - 10) / 1, k: 0.5)
            high.append(c.high)
            low.append(c.low)
        }
        #expect(abs(high[3] - 1.16) < 0.005 && abs(high[4] - 2.82) < 0.005 && abs(low[2] - 1.77) < 0.005)
        #expect(high[21] == 0)
        #expect(abs(high[28] - 5.28) < 0.005)
        #expect(high.firstIndex { $0 > 5 } == 28 && low.allSatisfy { $0 <= 5 })
    }

    /// Through the rules: a drift the CUSUM finds before the limits do asks for a repeat, then
    /// holds the unit until a service action; a result inside every limit the next day is
    /// still a failure.
    @Test func aCUSUMFailureHolds() {
        let rules = Self.rules()
        // A baseline of 0.997 and 1.003: SD 0.00316, the CUSUM's SD 1.645 × that (n = 10):
        // 0.00520; k = max(0.5, 0.5 % of the mean / 0.00520) = 0.96. Then +1.2 % a day, inside
        // ±1.5 %: z = 2.31, C⁺ grows by 1.35 a day and crosses 5 on the fourth.
        let quiet: [[String: Double]] = (0..<10).map { ["L1-L4": $0 % 2 == 0 ? 0.997 : 1.003] }
        let tail = [[String: Double]](repeating: ["L1-L4": 1.012], count: 5) + [["L1-L4": 1.0]]
        let state = QC.evaluate(Self.results(quiet + tail), rules: rules)
        #expect(abs((state.baseline?.regions["L1-L4"]?.cusumSigma ?? 0) - 0.00520) < 0.00002)
        let verdicts = state.points.dropFirst(10).map(\.verdict)
        // Over h on the fourth: a repeat; over h on the repeat: a drift, which holds.
        #expect(verdicts == [.pass, .pass, .pass, .repeatRequired, .fail, .fail])
        #expect(verdicts.last == .fail && state.condition == .drifted && state.blocksPatients)
        #expect(state.reason?.contains("L1-L4 CUSUM") == true)
    }

    /// Nine results in a row above the mean: a warning, not a lockout.
    @Test func aRunOnOneSideWarns() {
        let rules = Self.rules()
        let tail = [[String: Double]](repeating: ["L1-L4": 1.001], count: 9)
        let state = QC.evaluate(Self.results(Self.tenScans + tail), rules: rules)
        #expect(state.condition == .inControl && !state.blocksPatients)
        #expect(state.warnings == ["L1-L4: 9 results in a row above the baseline mean"])
        #expect(state.points.dropLast().allSatisfy { $0.warnings.isEmpty })
    }

    /// Due when nothing passed today in the site's time zone; the baseline's last scan counts.
    @Test func dueWhenNothingPassedToday() throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try #require(TimeZone(identifier: "Europe/Amsterdam"))
        let state = QC.evaluate(Self.results(Self.tenScans, hoursApart: 0.1), rules: Self.rules())
        let last = try #require(state.lastPass)
        #expect(!QC.isDue(state, at: last.addingTimeInterval(600), calendar: calendar))
        let nextMidnight = try #require(calendar.nextDate(after: last, matching: DateComponents(hour: 0), matchingPolicy: .nextTime))
        #expect(QC.isDue(state, at: nextMidnight.addingTimeInterval(60), calendar: calendar))
        #expect(QC.isDue(QC.evaluate([], rules: Self.rules()), at: last, calendar: calendar))
    }

    /// A phantom scanned once a day: three regions, each with the day-to-day SD the
    /// decomposition tests measure on the ESP phantom (CV 0.19–0.36 %, docs/physics.md), taken
    /// at 0.4 %; seeded, 20 baseline days then 100 in control, 40 histories. Then the issue's
    /// faults on the same histories: a 2 % step, a drift of 0.1 %/day.
    /// The lockout (docs/qc.md, "Lockout"): what a patient exam meets in each QC state, under
    /// each policy, with and without a service override.
    /// The QC day starts at `qc_day_starts`: a scan before it counts for the day before, and an
    /// override made before it ends when it comes.
    @Test func theQCDayStartsWhenTheSiteSays() throws {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = try #require(TimeZone(identifier: "UTC"))
        // Ten baseline scans an hour apart from 2026-05-28 20:26:40 UTC: the last at 05:26:40.
        let state = QC.evaluate(Self.results(Self.tenScans, hoursApart: 1), rules: Self.rules())
        let last = try #require(state.lastPass)
        #expect(utc.component(.hour, from: last) == 5)
        let later = last.addingTimeInterval(3600)  // 06:26:40
        #expect(!QC.isDue(state, at: later, calendar: utc, dayStartMinutes: 0))
        #expect(!QC.isDue(state, at: later, calendar: utc, dayStartMinutes: 300))   // both after 05:00
        #expect(QC.isDue(state, at: later, calendar: utc, dayStartMinutes: 360))    // 05:26 counted for the 28th
        #expect(QC.isDue(state, at: last.addingTimeInterval(19 * 3600), calendar: utc, dayStartMinutes: 0))  // 00:26 next day
        #expect(!QC.isDue(state, at: last.addingTimeInterval(19 * 3600), calendar: utc, dayStartMinutes: 300))
        // An override at 04:00 ends at the day's start, 05:00.
        let four = last.addingTimeInterval(-(86 + 1_200 + 3_600.0))  // 04:05:14
        let override = QC.Override(at: four, by: "svc", reason: "r")
        #expect(override.inForce(at: four.addingTimeInterval(1_800), lastScan: nil, calendar: utc, dayStartMinutes: 300))
        #expect(!override.inForce(at: four.addingTimeInterval(3_600), lastScan: nil, calendar: utc, dayStartMinutes: 300))
        #expect(override.inForce(at: four.addingTimeInterval(3_600), lastScan: nil, calendar: utc, dayStartMinutes: 0))
    }

    @Test func theLockoutFollowsTheStateThePolicyAndTheOverride() throws {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = try #require(TimeZone(identifier: "UTC"))
        let rules = Self.rules()
        let hour = 3600.0
        func gate(_ history: [QC.Measurement], at now: Date, _ policy: QC.DuePolicy, override: QC.Override? = nil) -> QC.Gate {
            QC.gate(QC.evaluate(history, rules: rules), at: now, lastScan: history.last?.at, override: override, policy: policy, calendar: utc)
        }
        // Three of ten baseline scans: a warning, or locked under `block`.
        let few = Self.results(Array(Self.tenScans.prefix(3)), hoursApart: 1)
        let morning = Self.day0.addingTimeInterval(3 * hour)
        guard case .warn(let w) = gate(few, at: morning, .warn) else { Issue.record("not a warning"); return }
        #expect(w.contains("QC baseline incomplete (3 phantom scans so far)"), "\(w)")
        guard case .blocked(let b) = gate(few, at: morning, .block) else { Issue.record("not blocked"); return }
        #expect(b.hasPrefix("patient exams are locked: QC baseline incomplete"), "\(b)")

        // The baseline complete today: clear under either policy; tomorrow QC is due.
        let ten = Self.results(Self.tenScans, hoursApart: 1)
        let sameDay = Self.day0.addingTimeInterval(11 * hour), nextDay = Self.day0.addingTimeInterval(30 * hour)
        #expect(gate(ten, at: sameDay, .warn) == .clear && gate(ten, at: sameDay, .block) == .clear)
        guard case .warn(let due) = gate(ten, at: nextDay, .warn), case .blocked = gate(ten, at: nextDay, .block) else {
            Issue.record("QC not due the next day"); return
        }
        #expect(due.contains("no QC today (last passed") && due.contains("dexa qc run"), "\(due)")

        // Outside the limits twice (+2 %): failed, blocked under either policy.
        let failed = Self.results(Self.tenScans + [["L1-L4": 1.02], ["L1-L4": 1.02]], hoursApart: 1)
        #expect(QC.evaluate(failed, rules: rules).condition == .failed)
        let afterFail = Self.day0.addingTimeInterval(12.5 * hour)
        guard case .blocked(let f) = gate(failed, at: afterFail, .warn) else { Issue.record("a failed QC did not block"); return }
        #expect(f.contains("QC failed") && f.contains("scan the QC phantom again"), "\(f)")
        // Once asked for a repeat, before it: blocked too.
        guard case .blocked(let r) = gate(Array(failed.dropLast()), at: afterFail, .warn) else { Issue.record("a repeat did not block"); return }
        #expect(r.contains("QC asks for a repeat"), "\(r)")
        // A pass lifts a Shewhart failure.
        let lifted = Self.results(Self.tenScans + [["L1-L4": 1.02], ["L1-L4": 1.02], ["L1-L4": 1.0]], hoursApart: 1)
        #expect(gate(lifted, at: Self.day0.addingTimeInterval(13.5 * hour), .block) == .clear)

        // An override made after the failure: in force the same day, until the next QC scan.
        let override = QC.Override(at: Self.day0.addingTimeInterval(12 * hour), by: "alice", reason: "physicist checked the unit")
        guard case .overridden(let o) = gate(failed, at: afterFail, .block, override: override) else { Issue.record("the override is not in force"); return }
        #expect(o.contains("QC override by alice") && o.contains("physicist checked the unit") && o.contains("QC failed"), "\(o)")
        let rescanned = failed + [QC.Measurement(id: 13, at: Self.day0.addingTimeInterval(12.2 * hour), bmdGCm2: ["L1-L4": 1.02])]
        if case .overridden = gate(rescanned, at: afterFail, .block, override: override) { Issue.record("the override outlived the next QC scan") }
        if case .overridden = gate(failed, at: Self.day0.addingTimeInterval(40 * hour), .block, override: override) {
            Issue.record("the override outlived its day")
        }
        // Made before the failing scan, it does not cover it.
        let early = QC.Override(at: Self.day0.addingTimeInterval(10.5 * hour), by: "alice", reason: "before")
        if case .overridden = gate(failed, at: afterFail, .block, override: early) { Issue.record("an override covered a later scan") }
        // Nor does it say anything when QC passed.
        #expect(gate(ten, at: sameDay, .block, override: QC.Override(at: Self.day0.addingTimeInterval(10.5 * hour), by: "a", reason: "b")) == .clear)
    }

    /// Cross-calibration (docs/qc.md): the last ten before against the first ten after, per
    /// region, worked by hand: before 0.99/1.01 alternating (mean 1.000, SD 0.010541); after
    /// shifted by +0.95 % (passes) or +1.45 % (fails the 1 % limit); SE √(2 × 0.010541² / 10)
    /// = 0.4714 %.
    @Test func crossCalibrationOfTenBeforeAndTenAfter() throws {
        // Two stray scans at the start of the old history: not among its last ten.
        let before = Self.results([["L1-L4": 0.5], ["L1-L4": 2.0]] + Self.tenScans)
        func after(_ shift: Double) -> [QC.Measurement] {
            Self.results(Self.tenScans.map { ["L1-L4": ($0["L1-L4"] ?? 0) + shift] } + [["L1-L4": 3.0]], from: 100)
        }
        let pass = try QC.crossCalibration(before: before, after: after(0.0095))
        let region = try #require(pass.regions["L1-L4"])
        #expect(abs(region.differencePercent - 0.95) < 1e-9 && abs(region.standardErrorPercent - 0.4714) < 1e-4, "\(region)")
        #expect(pass.passes && region.passes && pass.before == Array(3...12) && pass.after == Array(100...109) && pass.limitPercent == 1)
        let fail = try QC.crossCalibration(before: before, after: after(0.0145))
        #expect(!fail.passes && abs((fail.regions["L1-L4"]?.differencePercent ?? 0) - 1.45) < 1e-9)
        #expect(throws: QC.CrossCalibrationError.tooFew(before: 12, after: 9, need: 10)) {
            try QC.crossCalibration(before: before, after: Array(after(0).prefix(9)))
        }
        #expect(throws: QC.CrossCalibrationError.self) {
            try QC.crossCalibration(before: before, after: Self.results((0..<10).map { _ in ["L1": 1.0] }))
        }
    }

    @Test func simulatedYearsOfAPhantom() {
        struct Random {
            var state: UInt64
            mutating func next() -> Double {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                return Double((z ^ (z >> 31)) >> 11) * 0x1p-53
            }
            mutating func normal() -> Double { (-2 * log(max(next(), 1e-300))).squareRoot() * cos(2 * .pi * next()) }
        }
        let means = ["L1": 0.5, "L2": 1.0, "L3": 1.5], cv = 0.004
        let rules = QC.Rules()
        var falseRepeats = 0, falseFailures = 0, warnings = 0
        var stepDays: [Int] = [], driftDays: [Int] = [], driftAtSignal: [Double] = [], driftFailures: [Int] = []
        var driftFlags: [String: Int] = [:], stepBy: [String: Int] = [:]
        for seed in 1...40 {
            var rng = Random(state: UInt64(seed) &* 0x51_7CC1_B727_220A)
            func day(_ factor: Double) -> [String: Double] { means.mapValues { $0 * factor * (1 + cv * rng.normal()) } }
            let base = (0..<20).map { _ in day(1) }
            let control = (0..<100).map { _ in day(1) }
            let inControl = QC.evaluate(Self.results(base + control), rules: rules)
            falseRepeats += inControl.points.filter { $0.verdict == .repeatRequired }.count
            falseFailures += inControl.points.filter { $0.verdict == .fail }.count
            warnings += inControl.points.filter { !$0.warnings.isEmpty }.count
            // A 2 % step after 30 days in control: the day QC first fails (a repeat the same day).
            var history = base + control.prefix(30)
            var d = 0
            while d < 10 {
                d += 1
                history.append(day(1.02))
                var state = QC.evaluate(Self.results(history), rules: rules)
                if state.condition == .repeatRequired {
                    history.append(day(1.02))
                    state = QC.evaluate(Self.results(history), rules: rules)
                }
                if state.condition == .failed || state.condition == .drifted { stepBy[state.condition.rawValue, default: 0] += 1; break }
            }
            stepDays.append(d)
            // A drift of 0.1 %/day from the end of the baseline: the day of the first failure or warning.
            var drifting = base
            var t = 0, failedOn = 0
            while t < 30 {
                t += 1
                drifting.append(day(1 + 0.001 * Double(t)))
                var state = QC.evaluate(Self.results(drifting), rules: rules)
                if state.condition == .repeatRequired {
                    driftFlags["repeat_required", default: 0] += 1
                    if driftDays.count < seed { driftDays.append(t); driftAtSignal.append(0.1 * Double(t)) }
                    // The repeat, the same day.
                    drifting.append(day(1 + 0.001 * Double(t)))
                    state = QC.evaluate(Self.results(drifting), rules: rules)
                }
                if state.condition != .inControl || !state.warnings.isEmpty {
                    driftFlags[state.condition == .inControl ? "run warning" : state.condition.rawValue, default: 0] += 1
                    if driftDays.count < seed { driftDays.append(t); driftAtSignal.append(0.1 * Double(t)) }
                }
                if state.condition == .failed || state.condition == .drifted { failedOn = t; break }
            }
            if driftDays.count < seed { driftDays.append(t); driftAtSignal.append(0.1 * Double(t)) }
            driftFailures.append(failedOn)
        }
        print("QC, 40 simulated phantoms (CV 0.4 %, three regions): 100 days in control: \(falseRepeats) repeats asked, \(falseFailures) failures, \(warnings) days with a run warning")
        print("  2 % step: failed on day \(stepDays.min() ?? 0)–\(stepDays.max() ?? 0) (mean \(Double(stepDays.reduce(0, +)) / Double(stepDays.count))), as \(stepBy.sorted { $0.key < $1.key })")
        print(String(format: "  0.1 %%/day drift: first flagged on day %d–%d (%.1f–%.1f %% drift); failed on day %d–%d; days flagged by kind: %@",
                     driftDays.min() ?? 0, driftDays.max() ?? 0, driftAtSignal.min() ?? 0, driftAtSignal.max() ?? 0,
                     driftFailures.min() ?? 0, driftFailures.max() ?? 0, "\(driftFlags.sorted { $0.key < $1.key })"))
        // The issue's targets: no false failure in 100 days; a 2 % step fails within 2 days; a
        // 0.1 %/day drift is flagged before it reaches 1.5 %.
        #expect(falseFailures == 0)
        #expect(stepDays.allSatisfy { $0 <= 2 })
        #expect(driftAtSignal.allSatisfy { $0 < 1.5 })
        #expect(driftFailures.allSatisfy { $0 > 0 && $0 <= 16 })
    }
}
