import Testing
@testable import DXClinical

/// T, Z, WHO, the vertebra rule, precision and LSC against worked examples
/// (docs/clinical-references.md gives each source).
@Suite struct InterpretationTests {
    let neck = ReferenceSet.nhanes.youngAdult(.femoralNeck)
    let hip = ReferenceSet.nhanes.youngAdult(.totalHip)

    func t(_ bmd: Double, _ r: YoungAdultReference?) throws -> Double {
        let r = try #require(r)
        return try #require(standardScore(bmdGCm2: bmd, meanGCm2: r.meanGCm2, sdGCm2: r.sdGCm2))
    }

    /// Femoral neck 0.53 g/cm² against NHANES III 0.858 ± 0.120: T = −2.73, osteoporosis.
    @Test func tScoresAndTheirClasses() throws {
        #expect(abs(try t(0.530, neck) - -2.7333) < 1e-4)
        #expect(reportedScore(try t(0.530, neck)) == -2.7)
        #expect(WHOClass(tScore: try t(0.530, neck)) == .osteoporosis)
        #expect(try reportedScore(t(0.678, neck)) == -1.5 && WHOClass(tScore: t(0.678, neck)) == .lowBoneMass)
        #expect(WHOClass(tScore: try t(0.800, neck)) == .normal)
        #expect(try abs(t(0.700, hip) - -1.9836) < 1e-4 && WHOClass(tScore: t(0.700, hip)) == .lowBoneMass)
    }

    /// The class boundaries, where binary floating point lands a hair inside: 0.558 at the
    /// neck and 0.637 at the hip are T = −2.5 exactly on paper (−2.4999999999999996 in a
    /// Double) and osteoporosis; 0.738 and 0.820 are −1.0 and normal.
    @Test func boundariesAreTheReportedOnes() throws {
        #expect(try t(0.558, neck) > -2.5)  // the trap
        #expect(WHOClass(tScore: try t(0.558, neck)) == .osteoporosis)
        #expect(WHOClass(tScore: try t(0.637, hip)) == .osteoporosis)
        #expect(WHOClass(tScore: try t(0.738, neck)) == .normal)
        #expect(WHOClass(tScore: try t(0.820, hip)) == .normal)
        #expect(WHOClass(tScore: -1.04) == .normal && WHOClass(tScore: -1.05) == .lowBoneMass)
        #expect(WHOClass(tScore: -2.44) == .lowBoneMass && WHOClass(tScore: -2.45) == .osteoporosis)
        #expect(standardScore(bmdGCm2: 0.5, meanGCm2: 0.858, sdGCm2: 0) == nil)
        #expect(standardScore(bmdGCm2: .nan, meanGCm2: 0.858, sdGCm2: 0.12) == nil)
    }

    @Test func zScoresAndWhomWHOAppliesTo() {
        #expect(ZInterpretation(zScore: -2.0) == .belowExpectedRange)
        #expect(ZInterpretation(zScore: -1.96) == .belowExpectedRange)  // reported −2.0
        #expect(ZInterpretation(zScore: -1.94) == .withinExpectedRange)
        #expect(Applicability(sex: .female, ageYears: 62).usesWHO && Applicability(sex: .male, ageYears: 50).usesWHO)
        #expect(!Applicability(sex: .female, ageYears: 45).usesWHO && !Applicability(sex: .male, ageYears: 49.9).usesWHO)
    }

    /// The lowest of L1–L4, total hip and neck decides.
    @Test func theLowestSiteDecides() {
        let d = diagnosticSite([SiteScore(site: .lumbarSpine, bmdGCm2: 0.9, tScore: -1.4), SiteScore(site: .totalHip, bmdGCm2: 0.7, tScore: -1.98),
                                SiteScore(site: .femoralNeck, bmdGCm2: 0.6, tScore: -2.1)])
        #expect(d?.site == .femoralNeck)
        #expect(diagnosticSite([]) == nil)
    }

    /// ISCD: a vertebra more than 1.0 T-score from its neighbours goes, abnormal ones go, and
    /// never fewer than two remain.
    @Test func vertebraeAreExcludedByTheISCDRules() {
        let normal = selectVertebrae([("L1", -1.2), ("L2", -1.0), ("L3", -0.8), ("L4", -1.1)], abnormal: [:])
        #expect(normal.used == ["L1", "L2", "L3", "L4"] && normal.excluded.isEmpty)
        // An osteophyte raises L3 by 1.6 T.
        let high = selectVertebrae([("L1", -1.2), ("L2", -1.0), ("L3", 0.6), ("L4", -1.1)], abnormal: [:])
        #expect(high.used == ["L1", "L2", "L4"] && high.excluded.map(\.name) == ["L3"])
        // A low L1 (a fracture not seen): L1 goes, not L2 which it pulls apart from.
        #expect(selectVertebrae([("L1", -2.9), ("L2", -1.0), ("L3", -1.1), ("L4", -0.9)], abnormal: [:]).excluded.map(\.name) == ["L1"])
        // Exactly 1.0 apart (in tenths, as reported) is not more than 1.0.
        #expect(selectVertebrae([("L1", -0.3), ("L2", -1.3), ("L3", -0.3), ("L4", -0.3)], abnormal: [:]).used.count == 4)
        // A fracture, and metal, excluded by name; two remain.
        let metal = selectVertebrae([("L1", -1.2), ("L2", -1.0), ("L3", -0.8), ("L4", -1.1)], abnormal: ["L3": "pedicle screw", "L4": "fracture"])
        #expect(metal.used == ["L1", "L2"] && metal.excluded.map(\.reason) == ["pedicle screw", "fracture"] && !metal.tooFew)
        let one = selectVertebrae([("L1", -1.2), ("L2", -1.0), ("L3", -0.8), ("L4", -1.1)], abnormal: ["L1": "x", "L2": "x", "L3": "x"])
        #expect(one.tooFew)
        // The 1.0 rule stops at two.
        #expect(selectVertebrae([("L1", -3.0), ("L2", -1.0)], abnormal: [:]).used == ["L1", "L2"])
    }

    /// Bonnick (Bone Densitometry in Clinical Practice): spine RMS-SD 0.015 g/cm² gives an LSC
    /// of 2.77 × 0.015 = 0.0416 g/cm² at 95 %; and a small study computed by hand.
    @Test func precisionAndLeastSignificantChange() throws {
        let bonnick = try #require(Precision(scans: [[1.0, 1.0 + 0.015 * 2.0.squareRoot()]]))
        #expect(abs(bonnick.rmsSDGCm2 - 0.015) < 1e-12 && abs(bonnick.lscGCm2 - 0.04155) < 1e-9)
        let study = try #require(Precision(scans: [[0.900, 0.920], [0.800, 0.790], [1.000, 1.015]]))
        #expect(abs(study.rmsSDGCm2 - 0.010992) < 1e-6 && abs(study.lscGCm2 - 0.030449) < 1e-6)
        #expect(study.degreesOfFreedom == 3 && !study.isEnoughForISCD)
        let iscd = try #require(Precision(scans: Array(repeating: [1.0, 1.01, 0.99], count: 15)))
        #expect(iscd.degreesOfFreedom == 30 && iscd.isEnoughForISCD)
        #expect(Precision(scans: [[1.0]]) == nil)

        let up = try #require(Change(priorGCm2: 0.800, currentGCm2: 0.845, lscGCm2: 0.0416))
        #expect(up.significant && abs(up.changePercent - 5.625) < 1e-9)
        let small = try #require(Change(priorGCm2: 0.800, currentGCm2: 0.770, lscGCm2: 0.0416))
        #expect(!small.significant)
        #expect(Change(priorGCm2: 0, currentGCm2: 0.8, lscGCm2: 0.04) == nil)
    }

    /// Every reference names its source and status; the unconfirmed are marked.
    @Test func referencesCarryTheirProvenance() {
        for r in ReferenceSet.nhanes.youngAdult {
            #expect(!r.source.text.isEmpty && r.sdGCm2 > 0 && r.meanGCm2 > 0)
        }
        #expect(ReferenceSet.nhanes.youngAdult(.femoralNeck)?.status == .secondary)
        #expect(Set(ReferenceSet.nhanes.youngAdult.map(\.site)) == Set(ReferenceSite.allCases))
    }
}
