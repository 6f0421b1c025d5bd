import Foundation

/// T- and Z-scores, the WHO classification and the ISCD rules around them: pure functions,
/// each with its source (docs/clinical-references.md), tested against worked examples.

/// A standard score: how many reference SDs a BMD lies from the reference mean.
///
/// T = (BMD − young-adult mean) / young-adult SD (WHO 1994; ISCD). Z is the same against an
/// age- and sex-matched mean and SD.
public func standardScore(bmdGCm2: Double, meanGCm2: Double, sdGCm2: Double) -> Double? {
    guard bmdGCm2.isFinite, meanGCm2.isFinite, sdGCm2.isFinite, sdGCm2 > 0 else { return nil }
    return (bmdGCm2 - meanGCm2) / sdGCm2
}

/// A score as reports print it, and as it is classified: to one decimal, halves away from
/// zero. Classifying the unrounded value would call a neck of 0.558 g/cm² against
/// 0.858 ± 0.120 "low bone mass": in binary floating point that T is −2.4999999999999996,
/// not −2.5.
public func reportedScore(_ score: Double) -> Double {
    // + 0 makes −0 (a score of −0.04) the 0 it is reported as.
    (score * 10).rounded(.toNearestOrAwayFromZero) / 10 + 0
}

/// A signed figure as reported, with `digits` decimals: a value that rounds to zero is "+0…",
/// never "−0…" (a change of −0.0004 g/cm² is no loss).
public func reportedSigned(_ value: Double, digits: Int) -> String {
    let scale = pow(10.0, Double(digits))
    return String(format: "%+.\(digits)f", (value * scale).rounded(.toNearestOrAwayFromZero) / scale + 0)
}

/// The WHO classification of a T-score (WHO Technical Report Series 843, 1994; Kanis et al.,
/// J Bone Miner Res 1994;9:1137–1141), in the words ISCD prefers ("low bone mass" for
/// osteopenia). Applies to postmenopausal women and men aged 50 and over.
public enum WHOClass: String, Sendable, Codable, Equatable {
    case normal
    case lowBoneMass = "low_bone_mass"
    case osteoporosis

    /// T ≥ −1.0 normal; −2.5 < T < −1.0 low bone mass; T ≤ −2.5 osteoporosis (on the
    /// reported, one-decimal T).
    public init(tScore: Double) {
        let t = reportedScore(tScore)
        if t >= -1.0 { self = .normal } else if t > -2.5 { self = .lowBoneMass } else { self = .osteoporosis }
    }

    public var words: String {
        switch self {
        case .normal: "normal"
        case .lowBoneMass: "low bone mass (osteopenia)"
        case .osteoporosis: "osteoporosis"
        }
    }
}

/// What a Z-score says for premenopausal women and men under 50 (ISCD 2005 positions,
/// J Clin Densitom 2006;9:22–30): Z ≤ −2.0 is "below the expected range for age".
public enum ZInterpretation: String, Sendable, Codable, Equatable {
    case withinExpectedRange = "within_expected_range_for_age"
    case belowExpectedRange = "below_expected_range_for_age"

    public init(zScore: Double) {
        self = reportedScore(zScore) <= -2.0 ? .belowExpectedRange : .withinExpectedRange
    }
}

/// Whom the WHO classification applies to (ISCD 2005/2019): postmenopausal women and men
/// aged 50 and over. Menopausal status is not recorded by this product yet; age 50 stands in
/// for it in women, and the result says so (`Applicability.reason`).
public enum Applicability: Sendable, Equatable {
    /// T-scores and the WHO classes.
    case who(reason: String)
    /// Z-scores only; osteoporosis is not diagnosed on BMD alone.
    case zScoreOnly(reason: String)

    public enum Sex: String, Sendable, Codable { case female, male }

    public init(sex: Sex, ageYears: Double) {
        switch (sex, ageYears >= 50) {
        case (.male, true): self = .who(reason: "a man aged 50 or over")
        case (.male, false): self = .zScoreOnly(reason: "a man under 50")
        case (.female, true): self = .who(reason: "a woman aged 50 or over (taken as postmenopausal: menopausal status is not recorded)")
        case (.female, false): self = .zScoreOnly(reason: "a woman under 50 (taken as premenopausal: menopausal status is not recorded)")
        }
    }

    public var usesWHO: Bool { if case .who = self { return true }; return false }
}

/// One site's T-score for the diagnosis.
public struct SiteScore: Sendable, Codable, Equatable {
    public var site: ReferenceSite
    public var bmdGCm2: Double
    public var tScore: Double
    public init(site: ReferenceSite, bmdGCm2: Double, tScore: Double) { self.site = site; self.bmdGCm2 = bmdGCm2; self.tScore = tScore }
}

/// The diagnosis on the lowest T-score of L1–L4, total hip and femoral neck (ISCD 2005:
/// Hans et al., J Clin Densitom 2006;9:15–21; with both hips, the lowest of either side,
/// ISCD 2023). Nil when no site has a score.
public func diagnosticSite(_ scores: [SiteScore]) -> SiteScore? {
    scores.filter { $0.tScore.isFinite }.min { reportedScore($0.tScore) < reportedScore($1.tScore) }
}

// MARK: - Vertebrae

/// Which of L1–L4 the spine's BMD may use (ISCD 2019 adult positions; Rosen et al., J Clin
/// Densitom 2024;27:101436): a vertebra that is structurally abnormal is excluded, and so is
/// one more than 1.0 T-score from its neighbours; at least two vertebrae must remain, never
/// one alone.
public struct VertebraSelection: Sendable, Equatable {
    public var used: [String]
    public var excluded: [(name: String, reason: String)]
    /// Fewer than two vertebrae remain: the spine gets no BMD.
    public var tooFew: Bool { used.count < 2 }

    public static func == (a: VertebraSelection, b: VertebraSelection) -> Bool {
        a.used == b.used && a.excluded.map(\.name) == b.excluded.map(\.name) && a.excluded.map(\.reason) == b.excluded.map(\.reason)
    }
}

/// - Parameters:
///   - vertebrae: names in order from cranial to caudal (L1…L4) with each one's T-score.
///   - abnormal: names found structurally abnormal (fracture, osteophyte, metal), with why.
/// The 1.0 rule is applied to the evaluable vertebrae, one at a time: of the vertebrae that
/// differ from every evaluable neighbour by more than 1.0 T-score, the one farthest from the
/// median of the others is excluded (an end vertebra whose only neighbour is the outlier
/// differs from it too, but not from the rest), and the rule is applied again.
public func selectVertebrae(_ vertebrae: [(name: String, tScore: Double)], abnormal: [String: String]) -> VertebraSelection {
    var excluded: [(name: String, reason: String)] = []
    var kept: [(name: String, tScore: Double)] = []
    for v in vertebrae {
        if let why = abnormal[v.name] { excluded.append((v.name, why)) }
        else if !v.tScore.isFinite { excluded.append((v.name, "no BMD (not measured)")) }
        else { kept.append(v) }
    }
    // In tenths, as reported: −0.3 against −1.3 is a difference of exactly 1.0, not more.
    func tenths(_ t: Double) -> Int { Int((t * 10).rounded(.toNearestOrAwayFromZero)) }
    func median(_ values: [Int]) -> Double {
        let s = values.sorted()
        return s.count % 2 == 1 ? Double(s[s.count / 2]) : Double(s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    while kept.count > 2 {
        var worst: (index: Int, smallest: Int, fromOthers: Double)?
        for i in kept.indices {
            var neighbours: [Double] = []
            if i > 0 { neighbours.append(kept[i - 1].tScore) }
            if i + 1 < kept.count { neighbours.append(kept[i + 1].tScore) }
            let differences = neighbours.map { abs(tenths(kept[i].tScore) - tenths($0)) }
            guard let smallest = differences.min(), smallest > 10 else { continue }
            let others = kept.indices.filter { $0 != i }.map { tenths(kept[$0].tScore) }
            let fromOthers = abs(Double(tenths(kept[i].tScore)) - median(others))
            if let w = worst, w.fromOthers >= fromOthers { continue }
            worst = (i, smallest, fromOthers)
        }
        guard let w = worst else { break }
        let v = kept.remove(at: w.index)
        excluded.append((v.name, "T-score \(reportedScore(v.tScore)) differs from each neighbour by more than 1.0 (at least \(Double(w.smallest) / 10))"))
    }
    let order = vertebrae.map(\.name)
    excluded.sort { (order.firstIndex(of: $0.name) ?? 0) < (order.firstIndex(of: $1.name) ?? 0) }
    return VertebraSelection(used: kept.map(\.name), excluded: excluded)
}

// MARK: - Precision and change

/// A precision study's result for one site (ISCD precision calculator; Glüer et al.,
/// Osteoporos Int 1995;5:262–270): the root-mean-square of each patient's SD over repeated
/// scans, and the least significant change at 95 % confidence, 2.77 × RMS-SD (1.96 × √2).
public struct Precision: Sendable, Codable, Equatable {
    public var rmsSDGCm2: Double
    public var patients: Int
    public var degreesOfFreedom: Int

    public static let lscFactor = 2.77

    /// `scans`: each patient's repeated BMDs (at least two each). Nil when there are none.
    /// ISCD asks for 15 patients × 3 scans or 30 × 2 (27 degrees of freedom or more).
    public init?(scans: [[Double]]) {
        let usable = scans.filter { $0.count >= 2 && $0.allSatisfy(\.isFinite) }
        guard !usable.isEmpty else { return nil }
        var sumOfVariances = 0.0
        var df = 0
        for s in usable {
            let mean = s.reduce(0, +) / Double(s.count)
            sumOfVariances += s.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(s.count - 1)
            df += s.count - 1
        }
        rmsSDGCm2 = (sumOfVariances / Double(usable.count)).squareRoot()
        patients = usable.count
        degreesOfFreedom = df
    }

    public var lscGCm2: Double { Self.lscFactor * rmsSDGCm2 }
    /// ISCD's minimum for a precision study: 27 degrees of freedom.
    public var isEnoughForISCD: Bool { degreesOfFreedom >= 27 }
}

/// A follow-up at one site: the change from the prior exam, and whether it exceeds the LSC.
public struct Change: Sendable, Codable, Equatable {
    public var changeGCm2: Double
    public var changePercent: Double
    /// |change| ≥ LSC (ISCD: a change must equal or exceed the LSC to be significant), both as
    /// reported, to 0.001 g/cm²: a change printed equal to the LSC is significant (in binary
    /// floating point 0.9416 − 0.900 is 0.04159999…, under an LSC of 0.0416).
    public var significant: Bool

    public init?(priorGCm2: Double, currentGCm2: Double, lscGCm2: Double) {
        guard priorGCm2.isFinite, currentGCm2.isFinite, priorGCm2 > 0, lscGCm2.isFinite, lscGCm2 > 0 else { return nil }
        changeGCm2 = currentGCm2 - priorGCm2
        changePercent = changeGCm2 / priorGCm2 * 100
        func reported(_ v: Double) -> Double { (v * 1000).rounded(.toNearestOrAwayFromZero) }
        significant = reported(abs(changeGCm2)) >= reported(lscGCm2)
    }
}
