@testable import DXAnalysis
import DXClinical
import DXDecomposition
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// The standard exam's AP spine: 220 lines of 1 mm from y 580 mm, 1 s at 0.4 mA, the carriage
/// on the table's midline (ExamProtocol.standard).
let apSpineScan = ScanConfiguration(scanID: 1, mode: .dual, xUm: 200_000, yStartUm: 580_000, lineCount: 220, lineStepUm: 1000,
                                    linePeriodUs: 1_000_000, tubeCurrentUA: 400, linesPerFrame: 1)

/// One calibrated scanner shared by the suite's scans (a calibration takes a few seconds).
actor SharedScanner {
    static let shared = SharedScanner()
    /// The second physics model (thick-target spectrum, CdTe detector, scatter), calibrated on
    /// its own calibration phantom scans: the analysis must hold on physics it was not made on.
    static let cdte = SharedScanner(physics: .cdte)
    private var scanner: TableScanner

    init(physics: PhysicsModel = .kramers) { scanner = TableScanner(seed: 2026, physics: physics) }

    /// `noise`: the seed of the scan's photon noise (the same scan whatever ran before).
    func scan(_ spec: PatientSpec, noise: UInt64, _ config: ScanConfiguration = apSpineScan, region: String = "ap_spine",
              armAngleX10: Int16 = 0, keep: @Sendable (ScanLine) -> Bool = { _ in true }) throws -> DecomposedScan {
        if scanner.calibration == nil { try scanner.calibrate() }
        scanner.detector.reseedNoise(noise)
        return try scanner.decompose(PatientScene(spec), config, region: region, armAngleX10: armAngleX10, keep: keep)
    }
}

/// The truth of L1–L4 for a spec: per vertebra and the four together.
func lumbarTruth(_ spec: PatientSpec) -> (vertebrae: [String: APSpine.Truth], total: Double) {
    let truth = spec.spine.truth().filter { ["L1", "L2", "L3", "L4"].contains($0.name) }
    let bmc = truth.reduce(0) { $0 + $1.bmcG }, area = truth.reduce(0) { $0 + $1.areaCm2 }
    return (Dictionary(uniqueKeysWithValues: truth.map { ($0.name, $0) }), bmc / area)
}

@Suite("AP spine analysis")
struct SpineAnalysisTests {
    @Test func theStandardPatientIsLabelledAndMeasured() async throws {
        let spec = PatientSpec()
        let scan = try await SharedScanner.shared.scan(spec, noise: 1)
        let m = try SpineAnalysis.measure(scan)
        ImageDump.spine(scan, m, name: "standard-spine")
        let truth = lumbarTruth(spec)
        print("noise \(m.noiseGCm2) threshold \(m.thresholdGCm2) labels \(m.labelling) warnings \(m.warnings.map(\.message))")
        for v in m.vertebrae {
            let t = truth.vertebrae[v.name]
            print(String(format: "%@: BMD %.4f (truth %.4f) area %.2f (truth %.2f) height %.1f %@", v.name, v.bmdGCm2 ?? .nan, t?.bmdGCm2 ?? .nan,
                         v.areaCm2, t?.areaCm2 ?? .nan, v.heightMM, v.abnormality ?? ""))
        }
        #expect(m.labelling.decidedBy == .iliacCrests)
        #expect(m.labelling.cuesAgree == true)
        for name in ["L1", "L2", "L3", "L4"] {
            let v = try #require(m.vertebra(name))
            let t = try #require(truth.vertebrae[name])
            #expect(abs((v.bmdGCm2 ?? 0) / t.bmdGCm2 - 1) < 0.03, "\(name)")
            #expect(v.abnormality == nil)
        }
        let result = SpineAnalysis.interpret(m, patient: PatientContext(sex: .female, ageYears: 65))
        let total = try #require(result.roi("L1-L4"))
        print("L1-L4 \(total.bmdGCm2 ?? .nan) truth \(truth.total) T \(total.tScore ?? .nan) \(result.interpretation?.whoClass?.rawValue ?? "-")")
        #expect(abs((total.bmdGCm2 ?? 0) / truth.total - 1) < 0.02)
        #expect(total.vertebraeUsed == ["L1", "L2", "L3", "L4"])
    }
}

extension SpineAnalysisTests {
    /// A patient who moved 1.5 mm across the table (under the 2 mm stop) while L2 was scanned:
    /// the result says so and names L2, whose bone the image holds in two places; a still scan
    /// says nothing of the kind.
    @Test func aMovementThroughAVertebraIsNamed() async throws {
        var spec = PatientSpec()
        let l2 = try #require(spec.spine.truth().first { $0.name == "L2" })
        spec.motion = .init(fromYMM: l2.centreYMM, shiftXMM: 1.5)
        let scan = try await SharedScanner.shared.scan(spec, noise: 2)
        #expect(scan.motion.contains { abs(scan.geometry.y(row: $0.line) - l2.centreYMM) <= 3 }, "\(scan.motion)")
        let m = try SpineAnalysis.measure(scan)
        let warning = try #require(m.warnings.first { $0.code == "patient_moved" })
        print(warning.message)
        #expect(warning.message.contains("through L2") && !warning.message.contains("L1") && !warning.message.contains("L3"))
        let still = try SpineAnalysis.measure(try await SharedScanner.shared.scan(PatientSpec(), noise: 2))
        #expect(!still.warnings.contains { $0.code == "patient_moved" })
    }
}

/// The issue's figures over seeded patients (PatientVariety: size, fat, scoliosis, rotation,
/// density and crest height varied): labels, BMD per vertebra and L1–L4 against the scene's
/// truth, and abnormal vertebrae excluded with their reason.
@Suite("AP spine analysis over many patients", .serialized)
struct SpineStudyTests {
    static let patients = Int(ProcessInfo.processInfo.environment["DEXA_SPINE_PATIENTS"] ?? "") ?? 50
    /// Every patient's soft tissue (`DEXA_SOFT_TISSUE`, g/cm²) in place of the drawn 12–26: a
    /// study of obese patients (docs/physics.md, "The thick mode scaled to the need").
    static let softTissue = Double(ProcessInfo.processInfo.environment["DEXA_SOFT_TISSUE"] ?? "")

    @Test func fiftyPatientsLabelledAndMeasured() async throws {
        try await study(SharedScanner.shared, patients: Self.patients, model: "kramers")
    }

    /// Under the second physics model the targets are NOT met, and this test says so rather
    /// than hiding it (a known issue: it fails the moment the targets are met, so that the
    /// marker is removed). Found with 10 patients (docs/analysis.md, "Against the second
    /// physics model"): thin patients saturate in every exposure mode and their vertebrae are
    /// excluded as saturated (said, not measured); thick ones read 20–50 % high (the second
    /// model's pile-up and scatter, uncorrected: the accuracy issue); bone areas of thin
    /// patients read 3–6 % large (the CdTe detector's charge sharing blurs edges past the
    /// bone rule's 3σ cap). Labels were right wherever a spine was found.
    @Test func underTheSecondPhysicsModel() async throws {
        await withKnownIssue("second physics model: saturation of thin patients, thick-patient bias, blurred edges (docs/analysis.md)") {
            try await study(SharedScanner.cdte, patients: max(5, Self.patients / 5), model: "cdte")
        }
    }

    func study(_ scanner: SharedScanner, patients: Int, model: String) async throws {
        var labelled = 0, analysed = 0, falselyExcluded = 0
        var vertebraErrors: [Double] = [], totalErrors: [Double] = []
        var failures: [String] = []
        for seed in 1...UInt64(patients) {
            var spec = PatientVariety.patient(seed: seed)
            if let soft = Self.softTissue { spec.softTissue = soft }
            let scan = try await scanner.scan(spec, noise: seed)
            let truth = lumbarTruth(spec)
            let m: SpineMeasurement
            do { m = try SpineAnalysis.measure(scan) } catch {
                ImageDump.spine(scan, nil, name: "study-\(model)-\(seed)")
                failures.append(String(format: "seed %llu (tissue %.1f, fat %.2f, width %.0f, noise %.3f): ", seed, spec.softTissue, spec.fatFractionRight,
                                       spec.halfWidthMM, BoneMap.softTissueNoise(scan)) + "\(error)")
                continue
            }
            ImageDump.spine(scan, m, name: "study-\(model)-\(seed)")
            analysed += 1
            // Right labels: each of L1–L4 where the truth has it.
            let right = ["L1", "L2", "L3", "L4"].allSatisfy { name in
                guard let v = m.vertebra(name), let t = truth.vertebrae[name] else { return false }
                return abs(v.centreYMM - t.centreYMM) < 8
            }
            if right { labelled += 1 } else {
                failures.append("seed \(seed): labels \(m.vertebrae.map { "\($0.name)@\(Int($0.centreYMM))" }) truth \(truth.vertebrae.values.sorted { $0.name < $1.name }.map { "\($0.name)@\(Int($0.centreYMM))" }) \(m.labelling)")
                continue
            }
            for name in ["L1", "L2", "L3", "L4"] {
                guard let v = m.vertebra(name), let t = truth.vertebrae[name], let bmd = v.bmdGCm2 else { continue }
                vertebraErrors.append(bmd / t.bmdGCm2 - 1)
                if abs(bmd / t.bmdGCm2 - 1) > 0.03 {
                    failures.append(String(format: "seed %llu %@: %+.2f %% (area %+.1f %%, BMC %+.1f %%; threshold %.3f, elements %.2f, tissue %.1f, fat %.2f, L1 %.2f)",
                                           seed, name, (bmd / t.bmdGCm2 - 1) * 100, (v.areaCm2 / t.areaCm2 - 1) * 100, (v.bmcG / t.bmcG - 1) * 100,
                                           m.thresholdGCm2, spec.spine.posteriorElementsBMD, spec.softTissue, spec.fatFractionRight,
                                           spec.spine.vertebrae[2].bmd))
                }
            }
            let result = SpineAnalysis.interpret(m, patient: nil)
            if let total = result.roi("L1-L4")?.bmdGCm2 { totalErrors.append(total / truth.total - 1) }
            for roi in result.rois where roi.excluded {
                falselyExcluded += 1
                failures.append("seed \(seed): \(roi.name) excluded in a normal spine: \(roi.reason ?? "")")
            }
        }
        func stats(_ e: [Double]) -> String {
            let mean = e.reduce(0, +) / Double(max(1, e.count))
            let sd = (e.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(max(1, e.count - 1))).squareRoot()
            let worst = e.max { abs($0) < abs($1) } ?? 0
            return String(format: "mean %+.2f %%, SD %.2f %%, worst %+.2f %% (n %d)", mean * 100, sd * 100, worst * 100, e.count)
        }
        print("spine study (\(model)): \(patients) patients, \(analysed) analysed, labels right in \(labelled)")
        print("  per vertebra: \(stats(vertebraErrors))")
        print("  L1-L4: \(stats(totalErrors))")
        print("  vertebrae excluded in normal spines: \(falselyExcluded) of \(4 * labelled)")
        for f in failures { print("  \(f)") }
        #expect(Double(labelled) >= 0.98 * Double(patients))
        #expect(vertebraErrors.allSatisfy { abs($0) <= 0.03 })
        #expect(totalErrors.count == labelled && totalErrors.allSatisfy { abs($0) <= 0.02 })
        #expect(Double(falselyExcluded) <= 0.02 * Double(4 * labelled))
    }

    @Test func abnormalVertebraeAreExcludedWithTheirReason() async throws {
        let perKind = max(2, Self.patients / 5)
        var excluded = 0, cases = 0, mislabelled = 0
        var byKind: [String: (Int, Int)] = [:]
        var failures: [String] = []
        for kind in PatientVariety.SpineAbnormality.allCases {
            for k in 0..<perKind {
                let seed = UInt64(1000 + k * 7)
                let (spec, name) = PatientVariety.patient(seed: seed, with: kind)
                let scan = try await SharedScanner.shared.scan(spec, noise: seed)
                cases += 1
                guard let m = try? SpineAnalysis.measure(scan) else { failures.append("\(kind) seed \(seed): no analysis"); continue }
                ImageDump.spine(scan, m, name: "abnormal-\(kind)-\(seed)")
                let result = SpineAnalysis.interpret(m, patient: nil)
                let roi = result.roi(name)
                let truth = lumbarTruth(spec)
                let placed = ["L1", "L2", "L3", "L4"].allSatisfy { n in
                    guard let v = m.vertebra(n), let t = truth.vertebrae[n] else { return false }
                    return abs(v.centreYMM - t.centreYMM) < 8
                }
                if !placed { mislabelled += 1; failures.append("\(kind) on \(name) seed \(seed): labels \(m.vertebrae.map { "\($0.name)@\(Int($0.centreYMM))" })") }
                // The reason names what is wrong: metal for screws and a piercing, the fracture,
                // the osteophyte; sclerosis has no structural sign and falls to the 1.0 rule.
                let expectedReason = [PatientVariety.SpineAbnormality.screws: "metal", .piercing: "metal", .fracture: "fracture",
                                      .osteophyte: "osteophyte", .sclerosis: "differs from each neighbour"][kind] ?? "?"
                let ok = placed && roi?.excluded == true && roi?.reason?.contains(expectedReason) == true && roi?.reason != nil && result.roi("L1-L4")?.vertebraeUsed?.contains(name) == false
                if ok { excluded += 1 } else {
                    failures.append("\(kind) on \(name) seed \(seed): \(roi.map { "excluded \($0.excluded) \($0.reason ?? "")" } ?? "absent"); used \(result.roi("L1-L4")?.vertebraeUsed ?? [])")
                }
                byKind[kind.rawValue, default: (0, 0)].0 += ok ? 1 : 0
                byKind[kind.rawValue, default: (0, 0)].1 += 1
            }
        }
        print("abnormal vertebrae: \(excluded) of \(cases) excluded with a reason (labels wrong in \(mislabelled)); \(byKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.0)/\($0.value.1)" })")
        for f in failures { print("  \(f)") }
        #expect(Double(excluded) >= 0.95 * Double(cases))
    }
}

/// Scans that must not give a spine BMD, or must give it with a warning.
@Suite("AP spine analysis: bad input")
struct SpineBadInputTests {
    @Test func aScanWithNoSpineIsRefused() async throws {
        var spec = PatientSpec()
        spec.spine.vertebrae = []
        let scan = try await SharedScanner.shared.scan(spec, noise: 3)
        #expect(throws: SpineAnalysisError.self) { try SpineAnalysis.measure(scan) }
        do { _ = try SpineAnalysis.measure(scan) } catch { #expect("\(error)".hasPrefix("no spine in the field")) }
    }

    /// Soft tissue thicker than the calibration phantom's thickest cell (lean 25 and fat 6: 31
    /// g/cm²): the BMD is the calibration extrapolated, and the analysis says so, with the
    /// tissue measured over L1–L4 and the calibration's reach; the standard patient (18 g/cm²)
    /// is not warned, nor a stored scan decomposed before the reach was kept.
    @Test func tissueBeyondTheCalibrationIsSaid() async throws {
        var obese = PatientSpec()
        obese.softTissue = 34
        let scan = try await SharedScanner.shared.scan(obese, noise: 5)
        let m = try SpineAnalysis.measure(scan)
        let w = try #require(m.warnings.first { $0.code == "soft_tissue_beyond_calibration" }, "\(m.warnings)")
        #expect((w.value ?? 0) > 32 && (w.value ?? 0) < 37 && w.unit == "g/cm²", "\(w)")
        #expect(w.message.contains("L1–L4") && w.message.contains("31.0 g/cm²"), "\(w.message)")
        let standard = try SpineAnalysis.measure(try await SharedScanner.shared.scan(PatientSpec(), noise: 6))
        #expect(!standard.warnings.contains { $0.code == "soft_tissue_beyond_calibration" })
        var old = scan
        old.provenance.calibratedSoftTissueGCm2 = nil
        #expect(!(try SpineAnalysis.measure(old)).warnings.contains { $0.code == "soft_tissue_beyond_calibration" })
    }

    @Test func aHipScanIsNotASpine() async throws {
        let scan = try await SharedScanner.shared.scan(PatientSpec(), noise: 4, region: "left_hip")
        #expect(throws: SpineAnalysisError.notAnAPSpine("left hip")) { try SpineAnalysis.measure(scan) }
    }

    @Test func impossibleGeometryIsRefusedNotCrashed() throws {
        for (pitch, step, channels) in [(0.0, 1.0, 144), (1.0, 0.0, 144), (1e-300, 1.0, 144), (1.0, -1e-300, 144), (1.0, 1.0, 1), (.nan, 1.0, 144)] {
            var scan = DecomposedScan(geometry: .init(channels: channels, lines: 20, pitchMM: pitch, lineStepMM: step, carriageXMM: 200, firstLineYMM: 580),
                                      provenance: .init(capture: nil, scanID: 1, calibration: "none", region: "ap_spine"))
            scan.rowPresent = [Bool](repeating: true, count: 20)
            #expect(throws: SpineAnalysisError.self) { try SpineAnalysis.measure(scan) }
        }
    }

    @Test func arrivedRowsOfNaNAreRefused() throws {
        var scan = DecomposedScan(geometry: .init(channels: 144, lines: 100, pitchMM: 1, lineStepMM: -1, carriageXMM: 200, firstLineYMM: 800),
                                  provenance: .init(capture: nil, scanID: 1, calibration: "none", region: "ap_spine"))
        scan.rowPresent = [Bool](repeating: true, count: 100)
        #expect(throws: SpineAnalysisError.self) { try SpineAnalysis.measure(scan) }
    }

    /// Two vertebrae taken for one (a disc space not found) would shift every name: refused.
    @Test func aMissedDiscIsRefusedNotMislabelled() async throws {
        var spec = PatientSpec()
        spec.spine.vertebrae[3].discBelowMM = 0   // L2 on L3, no disc between
        let scan = try await SharedScanner.shared.scan(spec, noise: 9)
        #expect(throws: SpineAnalysisError.self) { try SpineAnalysis.measure(scan) }
        do { _ = try SpineAnalysis.measure(scan) } catch { print("missed disc: \(error)") }
    }

    /// Lines lost inside the spine (a damaged frame) may hide a disc: refused.
    @Test func linesMissingInsideTheSpineAreRefused() async throws {
        let scan = try await SharedScanner.shared.scan(PatientSpec(), noise: 10, keep: { !(100..<108).contains($0.index) })
        #expect(throws: SpineAnalysisError.linesMissingInSpine(8)) { try SpineAnalysis.measure(scan) }
    }

    /// Two compression fractures side by side are both found (each against the spine's median).
    @Test func adjacentFracturesAreBothFound() async throws {
        var spec = PatientSpec()
        for name in ["L2", "L3"] {
            if let i = spec.spine.vertebrae.firstIndex(where: { $0.name == name }) { spec.spine.vertebrae[i].heightLoss = 0.28 }
        }
        let scan = try await SharedScanner.shared.scan(spec, noise: 11)
        let result = SpineAnalysis.interpret(try SpineAnalysis.measure(scan), patient: nil)
        print("adjacent fractures: \(result.rois.map { "\($0.name) \($0.reason ?? "-")" })")
        #expect(result.roi("L2")?.reason?.contains("fracture") == true && result.roi("L3")?.reason?.contains("fracture") == true)
        #expect(result.roi("L1-L4")?.vertebraeUsed == ["L1", "L4"])
        #expect(result.roi("L1")?.excluded == false && result.roi("L4")?.excluded == false)
    }

    /// L1 outside the field (the scan started too low): no spine BMD, and why.
    @Test func aVertebraOutOfTheFieldGivesNoSpineBMD() async throws {
        var config = apSpineScan
        config.yStartUm = 640_000
        let scan = try await SharedScanner.shared.scan(PatientSpec(), noise: 12, config)
        let result = SpineAnalysis.interpret(try SpineAnalysis.measure(scan), patient: PatientContext(sex: .male, ageYears: 66))
        print("L1 out of the field: \(result.rois.map { "\($0.name) \($0.bmdGCm2 ?? .nan) \($0.reason ?? "-")" })")
        #expect(result.roi("L1-L4")?.bmdGCm2 == nil)
        #expect(result.roi("L1-L4")?.reason?.contains("not in the field") == true)
        #expect(result.interpretation?.whoClass == nil)
    }

    @Test func anEmptyOrNaNScanIsRefusedNotCrashed() throws {
        var empty = DecomposedScan(geometry: .init(channels: 144, lines: 0, pitchMM: 1, lineStepMM: 1, carriageXMM: 200, firstLineYMM: 580),
                                   provenance: .init(capture: nil, scanID: 1, calibration: "none", region: "ap_spine"))
        #expect(throws: SpineAnalysisError.self) { try SpineAnalysis.measure(empty) }
        empty = DecomposedScan(geometry: .init(channels: 144, lines: 50, pitchMM: 1, lineStepMM: -1, carriageXMM: 200, firstLineYMM: 580),
                               provenance: .init(capture: nil, scanID: 1, calibration: "none"))
        #expect(throws: SpineAnalysisError.self) { try SpineAnalysis.measure(empty) }
    }

    @Test func aScanStoppedHalfWayGivesNoSpineBMD() async throws {
        let scan = try await SharedScanner.shared.scan(PatientSpec(), noise: 5, keep: { $0.index < 110 })
        let result = SpineAnalysis.interpret(try SpineAnalysis.measure(scan), patient: PatientContext(sex: .female, ageYears: 60))
        let total = try #require(result.roi("L1-L4"))
        print("stopped: \(result.rois.map { "\($0.name) \($0.bmdGCm2 ?? .nan) \($0.reason ?? "")" }) \(result.warnings.map(\.code))")
        #expect(total.bmdGCm2 == nil && total.excluded)
        #expect(total.reason?.contains("incomplete") == true)
        #expect(result.warnings.contains { $0.code == "scan_incomplete" })
        #expect(result.roi("L4")?.reason == "not measured: the scan is incomplete")
    }

    @Test func sixLumbarVertebraeMakeTheCuesDisagree() async throws {
        var spec = PatientSpec()
        spec.spine = APSpine.adult(l1TopMM: 612, sixLumbar: true)
        let scan = try await SharedScanner.shared.scan(spec, noise: 6)
        let m = try SpineAnalysis.measure(scan)
        ImageDump.spine(scan, m, name: "six-lumbar")
        print("six lumbar: \(m.labelling) \(m.warnings.map(\.message))")
        #expect(m.labelling.decidedBy == .iliacCrests)
        #expect(m.labelling.cuesAgree == false)
        #expect(m.warnings.contains { $0.code == "labels_disagree" })
    }

    @Test func withoutCrestsTheRibsName() async throws {
        var spec = PatientSpec()
        spec.spine.iliacCrestBelowMM = nil
        let scan = try await SharedScanner.shared.scan(spec, noise: 7)
        let m = try SpineAnalysis.measure(scan)
        #expect(m.labelling.decidedBy == .ribs)
        #expect(m.warnings.contains { $0.code == "iliac_crests_not_in_field" })
        let truth = lumbarTruth(spec)
        for name in ["L1", "L2", "L3", "L4"] {
            #expect(abs((m.vertebra(name)?.centreYMM ?? 0) - (truth.vertebrae[name]?.centreYMM ?? 1000)) < 8, "\(name)")
        }
    }

    @Test func aTiltedOffCentreSpineIsWarned() async throws {
        var spec = PatientSpec()
        spec.spine.offsetMM = 30
        spec.spine.scoliosisMM = 25
        let scan = try await SharedScanner.shared.scan(spec, noise: 8)
        let m = try SpineAnalysis.measure(scan)
        ImageDump.spine(scan, m, name: "off-centre")
        print("off-centre: \(m.warnings.map(\.message))")
        #expect(m.warnings.contains { $0.code == "spine_off_centre" })
        // A curve seen whole (on the midline, 30 mm to the side at its apex): not straight. (Off
        // centre, the field's edge clips the axis where the curve peaks and hides part of it.)
        var curved = PatientSpec()
        curved.spine.scoliosisMM = 30
        let curvedScan = try await SharedScanner.shared.scan(curved, noise: 9)
        let c = try SpineAnalysis.measure(curvedScan)
        print("curved: \(c.warnings.map(\.message))")
        #expect(c.warnings.contains { $0.code == "spine_not_straight" || $0.code == "spine_tilted" })
        // The vertebrae cut by the field's side are not measured.
        let cut = m.vertebrae.filter { $0.abnormality?.contains("runs off the side") == true }.map(\.name)
        print("cut by the field: \(cut)")
        #expect(!cut.isEmpty)
    }
}

/// The clinical rules on a hand-made measurement: the numbers can be checked by hand.
@Suite("AP spine interpretation")
struct SpineInterpretationTests {
    static func vertebra(_ name: String, bmd: Double, area: Double, abnormality: String? = nil) -> VertebraMeasure {
        let line = DiscLine(xMM: 200, yMM: 0, slope: 0)
        return VertebraMeasure(name: name, bmdGCm2: bmd, bmcG: bmd * area, areaCm2: area, heightMM: 27, upper: line, lower: line, leftXMM: 180,
                               rightXMM: 220, centreXMM: 200, centreYMM: 0, abnormality: abnormality, missingLines: 0)
    }

    static func measurement(_ v: [VertebraMeasure]) -> SpineMeasurement {
        SpineMeasurement(vertebrae: v, labelling: Labelling(decidedBy: .iliacCrests, crestYMM: 760, lowestRibsOn: "T12", cuesAgree: true),
                         warnings: [], axis: [], noiseGCm2: 0.02, thresholdGCm2: 0.08)
    }

    /// L3 at 1.20 g/cm² is 2.0 T-score units from L2 (0.95) and 1.9 from L4 (0.97): excluded
    /// (ISCD: more than 1.0 from its neighbours); L1-L4 is then (0.90·11 + 0.95·12 + 0.97·14)
    /// / (11 + 12 + 14) = 0.9414 g/cm², T = (0.9414 − 1.065) / 0.122 = −1.0.
    @Test func anOutlierVertebraIsExcludedAndTheRestAveragedByArea() {
        let m = Self.measurement([Self.vertebra("L1", bmd: 0.90, area: 11), Self.vertebra("L2", bmd: 0.95, area: 12),
                                  Self.vertebra("L3", bmd: 1.20, area: 13), Self.vertebra("L4", bmd: 0.97, area: 14)])
        let r = SpineAnalysis.interpret(m, patient: PatientContext(sex: .female, ageYears: 62))
        #expect(r.roi("L3")?.excluded == true)
        #expect(r.roi("L3")?.reason?.contains("more than 1.0") == true)
        let total = r.roi("L1-L4")
        #expect(total?.vertebraeUsed == ["L1", "L2", "L4"])
        #expect(abs((total?.bmdGCm2 ?? 0) - (0.90 * 11 + 0.95 * 12 + 0.97 * 14) / 37) < 1e-12)
        #expect(total?.tScore == -1.0)
        #expect(r.roi("L1")?.tScore == -1.4)
        #expect(r.interpretation?.whoClass == .normal)
    }

    /// Two structurally abnormal vertebrae leave two: the spine BMD is over L1 and L2. Three
    /// leave one: no spine BMD, never one vertebra alone.
    @Test func abnormalVertebraeAreExcludedAndOneAloneIsNeverUsed() {
        let two = SpineAnalysis.interpret(Self.measurement([
            Self.vertebra("L1", bmd: 0.80, area: 11), Self.vertebra("L2", bmd: 0.82, area: 12),
            Self.vertebra("L3", bmd: 1.30, area: 13, abnormality: "metal or a dense artefact in the ROI (40 mm²)"),
            Self.vertebra("L4", bmd: 1.10, area: 14, abnormality: "osteophyte: 30 mm² of dense bone beyond the body's left side"),
        ]), patient: PatientContext(sex: .male, ageYears: 71))
        #expect(two.roi("L1-L4")?.vertebraeUsed == ["L1", "L2"])
        #expect(two.roi("L3")?.reason?.hasPrefix("metal") == true && two.roi("L4")?.reason?.hasPrefix("osteophyte") == true)
        // (0.80·11 + 0.82·12) / 23 = 0.8104; T = −2.1: low bone mass.
        #expect(two.roi("L1-L4")?.tScore == -2.1)
        #expect(two.interpretation?.whoClass == .lowBoneMass)
        let one = SpineAnalysis.interpret(Self.measurement([
            Self.vertebra("L1", bmd: 0.80, area: 11, abnormality: "suspected compression fracture"), Self.vertebra("L2", bmd: 0.82, area: 12),
            Self.vertebra("L3", bmd: 1.30, area: 13, abnormality: "metal"), Self.vertebra("L4", bmd: 1.10, area: 14, abnormality: "osteophyte"),
        ]), patient: nil)
        #expect(one.roi("L1-L4")?.bmdGCm2 == nil && one.roi("L1-L4")?.excluded == true)
        #expect(one.roi("L1-L4")?.reason?.contains("never one alone") == true)
        #expect(one.roi("L2")?.tScore == nil, "no T-score without the patient")
    }

    /// Under 50: no WHO class, and no Z-score without an age-matched table (said, not invented).
    @Test func underFiftyThereIsNoWHOClass() {
        let r = SpineAnalysis.interpret(Self.measurement((1...4).map { Self.vertebra("L\($0)", bmd: 0.7, area: 12) }),
                                        patient: PatientContext(sex: .female, ageYears: 41))
        #expect(r.interpretation?.whoClass == nil)
        #expect(r.interpretation?.note?.contains("Z-scores apply") == true)
        #expect(r.rois.allSatisfy { $0.zScore == nil })
    }

    /// With a Z-score reference installed: every vertebra and L1–L4 scored against the matched
    /// band, and under 50 the reading on L1–L4's Z. The table is SYNTHETIC (the arithmetic
    /// only): L1–L4 0.78 g/cm² against 1.02 ± 0.12 at 45 is Z = −2.0, below the expected range.
    @Test func underFiftyTheZScoreReads() throws {
        let table = AgeMatchedReference(name: "SYNTHETIC (tests only)", version: "0", population: "none", scale: "none",
                                        source: Citation(text: "invented for the test"), status: .secondary,
                                        tables: [.init(site: .lumbarSpine, sex: .female, bands: [.init(ageFrom: 40, ageTo: 50, meanGCm2: 1.02, sdGCm2: 0.12)])])
        let reference = ReferenceSet.nhanes.with(ageMatched: table)
        let m = Self.measurement((1...4).map { Self.vertebra("L\($0)", bmd: 0.78, area: 12) })
        let r = SpineAnalysis.interpret(m, reference: reference, patient: PatientContext(sex: .female, ageYears: 45))
        #expect(r.roi("L1-L4")?.zScore == -2.0 && r.roi("L2")?.zScore == -2.0)
        #expect(r.interpretation?.zInterpretation == .belowExpectedRange && r.interpretation?.whoClass == nil && r.interpretation?.note == nil)
        #expect(r.warnings.contains { $0.code == "z_reference_secondary" })
        #expect(r.reference.hasSuffix("Z-scores: SYNTHETIC (tests only) 0"))
        // Over 50 the Z-score is shown and the WHO class reads; past the table's ages, no Z.
        let older = SpineAnalysis.interpret(m, reference: reference, patient: PatientContext(sex: .female, ageYears: 62))
        #expect(older.roi("L1-L4")?.zScore == nil && older.interpretation?.whoClass == .lowBoneMass)
        let man = SpineAnalysis.interpret(m, reference: reference, patient: PatientContext(sex: .male, ageYears: 45))
        #expect(man.roi("L1-L4")?.zScore == nil && man.interpretation?.note?.contains("no band for this age and sex") == true)
    }

    @Test func agesFromBirthDates() {
        let day = ISO8601DateFormatter().date(from: "2026-12-02T10:00:00Z") ?? Date()
        #expect(PatientContext.age(birthDate: "1956-03-14", on: day).map { Int($0) } == 70)
        #expect(PatientContext.age(birthDate: "1956-12-02", on: day).map { Int($0) } == 70)
        #expect(PatientContext.age(birthDate: "1956-12-03", on: day).map { Int($0) } == 69)
        #expect(PatientContext.age(birthDate: "2030-01-01", on: day) == nil)
        #expect(PatientContext.age(birthDate: "1956-02-30", on: day) == nil)
        #expect(PatientContext.age(birthDate: "garbage", on: day) == nil)
        #expect(PatientContext(sex: "other", birthDate: "1956-03-14", on: day) == nil)
    }
}
