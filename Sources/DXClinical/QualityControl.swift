import Foundation

/// Phantom quality control: the baseline, the rules and the state they leave the unit in. Pure
/// values and functions over the phantom's daily results; the daemon stores the results, runs
/// the scan and enforces the lockout. Every rule and number has its source in docs/qc.md.
///
/// The rules, in the order they are applied to each result after the baseline:
/// 1. **Shewhart limits** (Bonnick & Lewis, "Quality control procedures"; ISCD practice): a
///    region outside ±`limitPercent` (1.5 %) of its baseline mean asks for a repeat scan; a
///    repeat outside again is a failure; a repeat inside clears it.
/// 2. **Tabular CUSUM** per region (Page 1954; Montgomery, "Introduction to Statistical
///    Quality Control", ch. 9): on z = (x − mean) / SD, C⁺ = max(0, C⁺ + z − k) and
///    C⁻ = max(0, C⁻ − z − k), k half the shift to be found (0.5 SD, and at least half of
///    1 % of the mean). Over h = 5 SD: a repeat (one slip can do it in a precise region); over
///    h on the repeat too, a drift, which stays until a service action (a new baseline, or a
///    reset after the cause is found): a passing scan does not lift a drift.
/// 3. **A run** of `runLength` (9) results on one side of the baseline mean in a region
///    (Nelson 1984, test 2; Westgard et al. 1981 use ten): a warning, not a lockout.
public enum QualityControl {
    /// One phantom scan's result: its regions' BMD (g/cm²) and when it was made. A repeat is
    /// simply the next result after one that asked for it.
    public struct Measurement: Sendable, Codable, Equatable {
        public var id: Int64
        public var at: Date
        public var bmdGCm2: [String: Double]

        public init(id: Int64, at: Date, bmdGCm2: [String: Double]) {
            self.id = id; self.at = at; self.bmdGCm2 = bmdGCm2
        }

        enum CodingKeys: String, CodingKey {
            case id, at
            case bmdGCm2 = "bmd_g_cm2"
        }
    }

    /// The rules' parameters, each with its source (docs/qc.md).
    public struct Rules: Sendable, Codable, Equatable {
        /// Results that set the baseline (10–25: ANZBMS asks for at least 10, Bonnick for 15–25
        /// daily scans).
        public var baselineScans = 20
        /// The control limit, % of the baseline mean (±1.5 %).
        public var limitPercent = 1.5
        /// CUSUM reference value k, in baseline SDs, at least half the smallest shift worth
        /// finding (`cusumShiftPercent` of the mean, 1 %): a phantom's SD can be 0.2 % of its
        /// mean, and k = 0.5 SD alone would then lock patients out over a 0.1 % bias that no
        /// reading notices. The decision interval h, in baseline SDs.
        public var cusumK = 0.5
        public var cusumShiftPercent = 1.0
        public var cusumH = 5.0
        /// Results in a row on one side of the mean for a warning.
        public var runLength = 9

        public init() {}

        enum CodingKeys: String, CodingKey {
            case baselineScans = "baseline_scans"
            case limitPercent = "limit_percent"
            case cusumK = "cusum_k"
            case cusumShiftPercent = "cusum_shift_percent"
            case cusumH = "cusum_h"
            case runLength = "run_length"
        }

        /// Why these rules cannot be used (nil when they can).
        public var problem: String? {
            if !(10...25).contains(baselineScans) { return "baseline_scans \(baselineScans): 10 to 25" }
            if !(limitPercent > 0 && limitPercent <= 5) { return "limit_percent \(limitPercent): above 0, at most 5" }
            if !(cusumK >= 0 && cusumK <= 2) { return "cusum_k \(cusumK): 0 to 2" }
            if !(cusumShiftPercent >= 0 && cusumShiftPercent <= 5) { return "cusum_shift_percent \(cusumShiftPercent): 0 to 5" }
            if !(cusumH > 0 && cusumH <= 20) { return "cusum_h \(cusumH): above 0, at most 20" }
            if !(5...30).contains(runLength) { return "run_length \(runLength): 5 to 30" }
            return nil
        }
    }

    /// A region's baseline: mean and SD of the baseline scans.
    public struct RegionBaseline: Sendable, Codable, Equatable {
        public var meanGCm2: Double
        public var sdGCm2: Double
        public var scans: Int

        public init(meanGCm2: Double, sdGCm2: Double, scans: Int) { self.meanGCm2 = meanGCm2; self.sdGCm2 = sdGCm2; self.scans = scans }

        /// The SD the CUSUM works in: the baseline SD's one-sided 95 % upper confidence bound,
        /// SD √((n − 1) / χ²₀.₀₅(n − 1)) (1.37 × SD from 20 scans). A baseline that happened to
        /// be quiet would otherwise make h = 5 SD a hair trigger: in 40 simulated histories of
        /// 100 days in control, one baseline of 20 read the SD 28 % low and its CUSUM crossed
        /// on day 56 (docs/qc.md). χ² by the Wilson–Hilferty approximation.
        public var cusumSigma: Double {
            let nu = Double(max(1, scans - 1))
            let a = 2 / (9 * nu)
            let chi2 = nu * pow(max(1e-9, 1 - a - 1.6448536269514722 * a.squareRoot()), 3)
            return sdGCm2 * (nu / chi2).squareRoot()
        }

        enum CodingKeys: String, CodingKey {
            case meanGCm2 = "mean_g_cm2"
            case sdGCm2 = "sd_g_cm2"
            case scans
        }
    }

    /// The baseline: per region, from the first `Rules.baselineScans` results after a service
    /// action (or the first ever).
    public struct Baseline: Sendable, Codable, Equatable {
        public var regions: [String: RegionBaseline]
        /// The results it was made from.
        public var measurementIDs: [Int64]

        public init(regions: [String: RegionBaseline], measurementIDs: [Int64]) { self.regions = regions; self.measurementIDs = measurementIDs }

        enum CodingKeys: String, CodingKey {
            case regions
            case measurementIDs = "measurement_ids"
        }
    }

    public enum BaselineError: Error, Sendable, Equatable, CustomStringConvertible {
        case tooFew(have: Int, need: Int)
        case regionsDiffer(String)
        case noSpread(String)

        public var description: String {
            switch self {
            case let .tooFew(have, need): "the baseline needs \(need) phantom scans; \(have) so far"
            case let .regionsDiffer(why): "the baseline scans do not measure the same regions: \(why)"
            case let .noSpread(region): "\(region): the baseline scans do not vary (SD 0): not a measurement"
            }
        }
    }

    /// The baseline from the first `rules.baselineScans` of `measurements` (repeats
    /// included: each is a scan of the phantom). Every scan must measure the same regions.
    public static func baseline(from measurements: [Measurement], rules: Rules) throws(BaselineError) -> Baseline {
        let n = rules.baselineScans
        guard measurements.count >= n else { throw .tooFew(have: measurements.count, need: n) }
        let used = Array(measurements.prefix(n))
        guard let names = used.first.map({ Set($0.bmdGCm2.keys) }), !names.isEmpty else { throw .regionsDiffer("no regions") }
        for m in used where Set(m.bmdGCm2.keys) != names {
            throw .regionsDiffer("scan \(m.id) has \(m.bmdGCm2.keys.sorted().joined(separator: ", ")), the first \(names.sorted().joined(separator: ", "))")
        }
        var regions: [String: RegionBaseline] = [:]
        for name in names {
            let values = used.compactMap { $0.bmdGCm2[name] }
            guard values.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw .regionsDiffer("\(name) has a value that is not a BMD") }
            let mean = values.reduce(0, +) / Double(values.count)
            let sd = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)).squareRoot()
            guard sd > 0 else { throw .noSpread(name) }
            regions[name] = RegionBaseline(meanGCm2: mean, sdGCm2: sd, scans: values.count)
        }
        return Baseline(regions: regions, measurementIDs: used.map(\.id))
    }

    /// What one result meant.
    public enum Verdict: String, Sendable, Codable, Equatable {
        /// Part of the baseline.
        case baseline
        case pass
        /// Outside the limits once: scan the phantom again.
        case repeatRequired = "repeat_required"
        /// Out of control: no patient exams until QC passes (Shewhart) or service acts (CUSUM).
        case fail
    }

    /// One result as the rules read it.
    public struct Point: Sendable, Codable, Equatable {
        public var measurementID: Int64
        /// When the scan was made, ISO 8601 (UTC).
        public var at: String
        public var verdict: Verdict
        /// Per region: % from the baseline mean, and the CUSUM's two sides after this result (SDs).
        public var deviationPercent: [String: Double]
        public var cusumHigh: [String: Double]
        public var cusumLow: [String: Double]
        /// Why the verdict (the rule and the region), and warnings (a run).
        public var reasons: [String]
        public var warnings: [String]

        enum CodingKeys: String, CodingKey {
            case measurementID = "measurement_id"
            case at, verdict
            case deviationPercent = "deviation_percent"
            case cusumHigh = "cusum_high"
            case cusumLow = "cusum_low"
            case reasons, warnings
        }
    }

    /// The unit's QC state after its history.
    public struct State: Sendable, Codable, Equatable {
        public enum Condition: String, Sendable, Codable, Equatable {
            /// Fewer results than the baseline needs: patients are not scanned on an unchecked unit.
            case baselineIncomplete = "baseline_incomplete"
            case inControl = "in_control"
            case repeatRequired = "repeat_required"
            /// Two results in a row outside the limits: lifted by a result inside them.
            case failed
            /// The CUSUM crossed: lifted only by a service action.
            case drifted
        }
        public var condition: Condition
        public var points: [Point]
        public var baseline: Baseline?
        /// The latest result that passed, and the warnings standing (a run in progress).
        public var lastPass: Date?
        public var warnings: [String]
        public var reason: String?

        /// Whether patient exams must wait for QC (the policy for "no QC today" is the daemon's).
        public var blocksPatients: Bool { condition != .inControl }

        enum CodingKeys: String, CodingKey {
            case condition, points, baseline
            case lastPass = "last_pass"
            case warnings, reason
        }
    }

    /// The rules over a history (oldest first, since the last service action): the baseline
    /// from its first scans, then every later result judged in turn.
    public static func evaluate(_ history: [Measurement], rules: Rules) -> State {
        let baseline: Baseline
        do {
            baseline = try Self.baseline(from: history, rules: rules)
        } catch {
            let points = history.map {
                Point(measurementID: $0.id, at: $0.at.formatted(.iso8601), verdict: .baseline, deviationPercent: [:], cusumHigh: [:], cusumLow: [:], reasons: [], warnings: [])
            }
            return State(condition: .baselineIncomplete, points: points, baseline: nil, lastPass: nil, warnings: [], reason: error.description)
        }
        // The baseline's own scans, read against it (for the charts; no rule applies to them).
        let points = history.prefix(rules.baselineScans).map { m in
            let deviation = Dictionary(uniqueKeysWithValues: baseline.regions.compactMap { name, b in
                m.bmdGCm2[name].map { (name, ($0 / b.meanGCm2 - 1) * 100) }
            })
            return Point(measurementID: m.id, at: m.at.formatted(.iso8601), verdict: .baseline, deviationPercent: deviation, cusumHigh: [:], cusumLow: [:],
                         reasons: [], warnings: [])
        }
        var state = judge(Array(history.dropFirst(rules.baselineScans)), against: baseline, rules: rules)
        state.points = points + state.points
        state.lastPass = state.lastPass ?? history.prefix(rules.baselineScans).last?.at
        return state
    }

    /// Results judged in turn against a baseline (oldest first), the CUSUM starting at 0.
    public static func judge(_ results: [Measurement], against baseline: Baseline, rules: Rules) -> State {
        var points: [Point] = []
        let names = baseline.regions.keys.sorted()
        var high = Dictionary(uniqueKeysWithValues: names.map { ($0, 0.0) }), low = high
        var side = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })  // signed run length
        var condition = State.Condition.inControl
        var lastPass: Date?
        var reason: String?
        var standing: [String] = []
        for m in results {
            var deviation: [String: Double] = [:], reasons: [String] = [], warnings: [String] = []
            var outside = false, crossed = false
            for name in names {
                guard let b = baseline.regions[name] else { continue }
                guard let x = m.bmdGCm2[name], x.isFinite else {
                    reasons.append("\(name): not measured")
                    outside = true
                    continue
                }
                let d = (x / b.meanGCm2 - 1) * 100
                deviation[name] = d
                // Judged as reported, to 0.01 %: 0.985 against 1.000 is −1.50 %, inside ±1.5 %
                // (in binary floating point it is −1.5000000000000013).
                if abs((d * 100).rounded() / 100) > rules.limitPercent {
                    outside = true
                    reasons.append(String(format: "%@ %+.2f %% from the baseline (limit ±%.1f %%)", name, d, rules.limitPercent))
                }
                let sigma = b.cusumSigma
                let z = (x - b.meanGCm2) / sigma
                let k = max(rules.cusumK, rules.cusumShiftPercent / 200 * b.meanGCm2 / sigma)
                (high[name], low[name]) = cusumStep(high: high[name] ?? 0, low: low[name] ?? 0, z: z, k: k)
                if (high[name] ?? 0) > rules.cusumH || (low[name] ?? 0) > rules.cusumH {
                    crossed = true
                    let up = (high[name] ?? 0) > rules.cusumH
                    reasons.append(String(format: "%@ CUSUM %.1f SD %@ (limit %.1f)", name, up ? high[name] ?? 0 : low[name] ?? 0, up ? "high" : "low", rules.cusumH))
                }
                let s = side[name] ?? 0
                side[name] = x > b.meanGCm2 ? (s > 0 ? s + 1 : 1) : (s < 0 ? s - 1 : -1)
                if abs(side[name] ?? 0) >= rules.runLength {
                    warnings.append("\(name): \(abs(side[name] ?? 0)) results in a row \((side[name] ?? 0) > 0 ? "above" : "below") the baseline mean")
                }
            }
            let verdict: Verdict
            if condition == .drifted {
                // A drift holds until a service action starts a new history.
                verdict = .fail
            } else if crossed && condition == .repeatRequired {
                // The CUSUM over h on the repeat too: a drift, not one slip.
                verdict = .fail
                reason = reasons.joined(separator: "; ")
                condition = .drifted
            } else if crossed && !outside {
                // One result can take a precise region's CUSUM over h while inside the limits
                // (a CV of 0.13 %: 1.4 % is 5 of its SDs beyond k): scan again before calling
                // it a drift.
                verdict = .repeatRequired
                condition = .repeatRequired
                reason = reasons.joined(separator: "; ")
            } else if outside {
                if condition == .repeatRequired || condition == .failed {
                    verdict = .fail
                    condition = .failed
                } else {
                    verdict = .repeatRequired
                    condition = .repeatRequired
                }
                reason = reasons.joined(separator: "; ")
            } else {
                verdict = .pass
                condition = .inControl
                lastPass = m.at
                reason = nil
            }
            standing = warnings
            points.append(Point(measurementID: m.id, at: m.at.formatted(.iso8601), verdict: verdict, deviationPercent: deviation, cusumHigh: high, cusumLow: low,
                                reasons: reasons, warnings: warnings))
        }
        return State(condition: condition, points: points, baseline: baseline, lastPass: lastPass, warnings: standing, reason: reason)
    }

    /// One step of the tabular CUSUM (Montgomery, ch. 9, eq. 9.2–9.3) on a standardised result
    /// z with reference value k: C⁺ = max(0, C⁺ + z − k), C⁻ = max(0, C⁻ − z − k).
    public static func cusumStep(high: Double, low: Double, z: Double, k: Double) -> (high: Double, low: Double) {
        (max(0, high + z - k), max(0, low - z - k))
    }

    /// A cross-calibration (docs/qc.md): the same phantom scanned `scans` times before a change
    /// (a service action on the unit, or on another unit) and as often after it; per region the
    /// means and their % difference, passing within `limitPercent` (1 %, ISCD practice).
    public struct CrossCalibration: Sendable, Codable, Equatable {
        public struct Region: Sendable, Codable, Equatable {
            public var beforeGCm2: Double
            public var afterGCm2: Double
            public var differencePercent: Double
            /// The difference's standard error from the two sets' SDs, %.
            public var standardErrorPercent: Double
            public var passes: Bool
            enum CodingKeys: String, CodingKey {
                case beforeGCm2 = "before_g_cm2", afterGCm2 = "after_g_cm2", differencePercent = "difference_percent"
                case standardErrorPercent = "standard_error_percent", passes
            }
        }
        public var regions: [String: Region]
        public var before: [Int64]
        public var after: [Int64]
        public var limitPercent: Double
        public var passes: Bool

        enum CodingKeys: String, CodingKey {
            case regions, before, after, passes
            case limitPercent = "limit_percent"
        }
    }

    public enum CrossCalibrationError: Error, Sendable, Equatable, CustomStringConvertible {
        case tooFew(before: Int, after: Int, need: Int)
        case regionsDiffer(String)

        public var description: String {
            switch self {
            case let .tooFew(before, after, need): "a cross-calibration needs \(need) phantom scans before the change and \(need) after; there are \(before) and \(after)"
            case .regionsDiffer(let why): "the scans do not measure the same regions: \(why)"
            }
        }
    }

    /// The cross-calibration of the last `scans` results `before` a change with the first
    /// `scans` `after` it.
    public static func crossCalibration(before: [Measurement], after: [Measurement], scans: Int = 10,
                                        limitPercent: Double = 1.0) throws(CrossCalibrationError) -> CrossCalibration {
        guard before.count >= scans, after.count >= scans, scans >= 2 else { throw .tooFew(before: before.count, after: after.count, need: scans) }
        let b = Array(before.suffix(scans)), a = Array(after.prefix(scans))
        guard let names = b.first.map({ Set($0.bmdGCm2.keys) }), !names.isEmpty else { throw .regionsDiffer("no regions") }
        for m in b + a where Set(m.bmdGCm2.keys) != names {
            throw .regionsDiffer("scan \(m.id) has \(m.bmdGCm2.keys.sorted().joined(separator: ", ")), the first \(names.sorted().joined(separator: ", "))")
        }
        func stats(_ xs: [Double]) -> (mean: Double, variance: Double) {
            let mean = xs.reduce(0, +) / Double(xs.count)
            return (mean, xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count - 1))
        }
        var regions: [String: CrossCalibration.Region] = [:]
        for name in names.sorted() {
            let x = stats(b.compactMap { $0.bmdGCm2[name] }), y = stats(a.compactMap { $0.bmdGCm2[name] })
            guard x.mean > 0, y.mean > 0, x.mean.isFinite, y.mean.isFinite else { throw .regionsDiffer("\(name) has a value that is not a BMD") }
            let d = (y.mean / x.mean - 1) * 100
            let se = (x.variance / Double(scans) + y.variance / Double(scans)).squareRoot() / x.mean * 100
            regions[name] = .init(beforeGCm2: x.mean, afterGCm2: y.mean, differencePercent: d, standardErrorPercent: se,
                                  passes: abs((d * 100).rounded() / 100) <= limitPercent)
        }
        return CrossCalibration(regions: regions, before: b.map(\.id), after: a.map(\.id), limitPercent: limitPercent,
                                passes: regions.values.allSatisfy(\.passes))
    }

    /// What "no QC today" (or a baseline not yet complete) does to patient exams; a failed QC
    /// always blocks them.
    public enum DuePolicy: String, Sendable, Codable, Equatable, CaseIterable {
        /// The exam starts, and every report made from it says QC was not done.
        case warn
        /// The exam is refused until QC passes (or a service engineer overrides).
        case block
    }

    /// A service engineer's override of the lockout: who, when and why. It covers the QC state
    /// it was made in: it ends with the next QC scan of the unit (whatever that scan says) or at
    /// the end of its calendar day, whichever comes first.
    public struct Override: Sendable, Codable, Equatable {
        public var at: Date
        public var by: String
        public var reason: String

        public init(at: Date, by: String, reason: String) { self.at = at; self.by = by; self.reason = reason }

        /// Whether it is still in force at `now`, after the unit's latest QC scan `lastScan`.
        public func inForce(at now: Date, lastScan: Date?, calendar: Calendar, dayStartMinutes: Int = 0) -> Bool {
            guard at <= now, QualityControl.sameDay(at, now, calendar: calendar, dayStartMinutes: dayStartMinutes) else { return false }
            if let lastScan, lastScan > at { return false }
            return true
        }
    }

    /// What the QC state means for a patient exam about to start.
    public enum Gate: Sendable, Equatable {
        /// QC passed today: nothing to say.
        case clear
        /// QC is not done today (or the baseline is incomplete) and the policy is to warn:
        /// the exam starts and carries the message.
        case warn(String)
        /// The exam must not start: the message names QC and what lifts the lockout.
        case blocked(String)
        /// A service override is in force: the exam starts and carries the message.
        case overridden(String)

        public var message: String? {
            switch self {
            case .clear: nil
            case .warn(let m), .blocked(let m), .overridden(let m): m
            }
        }
    }

    /// The lockout (docs/qc.md, "Lockout"): a failed, drifted or unrepeated QC blocks patient
    /// exams; no passing QC today (or a baseline still filling) follows `policy`; a service
    /// override in force lets the exam start, saying so.
    public static func gate(_ state: State, at now: Date, lastScan: Date?, override: Override?, policy: DuePolicy,
                            calendar: Calendar, dayStartMinutes: Int = 0) -> Gate {
        let problem: (String, Bool)?  // (what is wrong, whether it blocks whatever the policy)
        switch state.condition {
        case .failed:
            problem = ("QC failed (\(state.reason ?? "outside the limits twice")): scan the QC phantom again (`dexa qc run`)", true)
        case .drifted:
            problem = ("QC drifted (\(state.reason ?? "CUSUM over its limit")): a service engineer must find the cause and start a new baseline (`dexa qc reset`)", true)
        case .repeatRequired:
            problem = ("QC asks for a repeat scan (\(state.reason ?? "outside the limits")): scan the QC phantom again (`dexa qc run`)", true)
        case .baselineIncomplete:
            let have = state.points.count
            problem = ("QC baseline incomplete (\(have) phantom scan\(have == 1 ? "" : "s") so far): the unit is not yet checked", policy == .block)
        case .inControl:
            if isDue(state, at: now, calendar: calendar, dayStartMinutes: dayStartMinutes) {
                let last = state.lastPass.map { "last passed \($0.formatted(.iso8601))" } ?? "never passed"
                problem = ("no QC today (\(last)): scan the QC phantom (`dexa qc run`)", policy == .block)
            } else {
                problem = nil
            }
        }
        guard let (what, blocks) = problem else { return .clear }
        if let override, override.inForce(at: now, lastScan: lastScan, calendar: calendar, dayStartMinutes: dayStartMinutes) {
            return .overridden("QC override by \(override.by) at \(override.at.formatted(.iso8601)): \(override.reason); \(what)")
        }
        return blocks ? .blocked("patient exams are locked: \(what)") : .warn(what)
    }

    /// Whether QC is due at `now`: no passing result (or baseline scan) yet in this QC day, the
    /// day of `calendar`'s time zone (the site's) that starts `dayStartMinutes` after midnight
    /// (`qc_day_starts`: at 05:00, a scan at 04:30 counts for the day before).
    public static func isDue(_ state: State, at now: Date, calendar: Calendar, dayStartMinutes: Int = 0) -> Bool {
        guard let last = state.lastPass else { return true }
        return !sameDay(last, now, calendar: calendar, dayStartMinutes: dayStartMinutes)
    }

    /// Whether two moments fall in the same QC day: the calendar day of each, moved back by the
    /// day's start. (Across a change to or from summer time the QC day is an hour longer or
    /// shorter, like the night it spans.)
    public static func sameDay(_ a: Date, _ b: Date, calendar: Calendar, dayStartMinutes: Int) -> Bool {
        let shift = -Double(max(0, min(dayStartMinutes, 1439))) * 60
        return calendar.isDate(a.addingTimeInterval(shift), inSameDayAs: b.addingTimeInterval(shift))
    }
}
