@testable import DXAnalysis
import DXClinical
import DXDecomposition
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// The standard exam's hips: 150 lines of 1 mm from y 860 mm, 1.2 s at 0.333 mA, the carriage
/// 100 mm to the patient's left (x 300 mm) or right (x 100 mm) of the table's midline.
/// The exam's hip scan; `lateralShiftMM` moves the field towards the hip's lateral side (a
/// technologist repositioning after the analysis found the trochanter at the field's edge).
func hipScan(_ side: ProximalFemur.Side, lateralShiftMM: Double = 0) -> ScanConfiguration {
    let x = (side == .left ? 300_000 : 100_000) + Int32((side == .left ? 1 : -1) * lateralShiftMM * 1000)
    return ScanConfiguration(scanID: 2, mode: .dual, xUm: x, yStartUm: 860_000, lineCount: 150, lineStepUm: 1000,
                      linePeriodUs: 1_200_000, tubeCurrentUA: 333, linesPerFrame: 1)
}

/// The scene's truth over an ROI's pixels: the femur's own mineral at each pixel (the detector
/// samples the scene at each channel's centre), over the pixels where there is femur. Pixels of
/// pelvis or soft tissue in the ROI add to the measured area and mineral, not to the truth's.
func femurTruth(_ spec: PatientSpec, _ hip: ProximalFemur, _ m: HipMeasurement, _ scan: DecomposedScan, roi: String) -> (bmd: Double, area: Double, bmc: Double)? {
    guard let pixels = m.pixels[roi], !pixels.isEmpty else { return nil }
    let map = BoneMap(scan)
    var bmc = 0.0, n = 0
    for i in pixels {
        let b = hip.femur(x: map.x(i % map.columns), y: map.y(i / map.columns), midline: spec.midlineMM)
        if b > 0 { bmc += b; n += 1 }
    }
    guard n > 0 else { return nil }
    return (bmc / Double(n), Double(n) * map.pixelAreaCm2, bmc * map.pixelAreaCm2)
}

extension SharedScanner {
    func hip(_ spec: PatientSpec, _ side: ProximalFemur.Side, noise: UInt64, lateralShiftMM: Double = 0,
             keep: @Sendable (ScanLine) -> Bool = { _ in true }) throws -> DecomposedScan {
        try scan(spec, noise: noise, hipScan(side, lateralShiftMM: lateralShiftMM), region: side == .left ? "left_hip" : "right_hip", keep: keep)
    }
}

@Suite("Hip analysis")
struct HipAnalysisTests {
    /// A field that cuts the greater trochanter: the analysis says how near the femur comes to
    /// the field's lateral edge and how far to move it; moved as it says, the hip is measured
    /// with no warning. The field is moved 20 mm medially from the exam's position, which
    /// brings the standard patient's femur within 5 mm of its edge.
    @Test(arguments: [ProximalFemur.Side.left, .right])
    func aTrochanterAtTheFieldsEdgeIsSaid(_ side: ProximalFemur.Side) async throws {
        let spec = PatientSpec()
        let hip = try #require(spec.hips.first { $0.side == side })
        let cut = try await SharedScanner.shared.hip(spec, side, noise: 12, lateralShiftMM: -20)
        let m = try HipAnalysis.measure(cut)
        let edge = try #require(m.warnings.first { $0.code == "trochanter_at_field_edge" }, "\(m.warnings)")
        let margin = try #require(edge.value)
        #expect(margin < HipAnalysis.Parameters().lateralTissueMM)
        #expect(edge.message.contains("move the field"), "\(edge.message)")
        let moved = try await SharedScanner.shared.hip(spec, side, noise: 13, lateralShiftMM: -20 + HipAnalysis.Parameters().lateralTissueMM - margin + 10)
        let again = try HipAnalysis.measure(moved)
        #expect(!again.warnings.contains { $0.code == "trochanter_at_field_edge" }, "\(again.warnings)")
        let total = try #require(again.roi("total_hip")?.bmdGCm2), truth = try #require(femurTruth(spec, hip, again, moved, roi: "total_hip"))
        #expect(abs(total / truth.bmd - 1) < 0.03)
        // At the exam's own position there is room: no warning (the test below checks all).
        let standard = try HipAnalysis.measure(try await SharedScanner.shared.hip(spec, side, noise: 11))
        #expect(!standard.warnings.contains { $0.code == "trochanter_at_field_edge" })
    }

    @Test(arguments: [ProximalFemur.Side.left, .right])
    func theStandardPatientsHip(_ side: ProximalFemur.Side) async throws {
        let spec = PatientSpec()
        let hip = try #require(spec.hips.first { $0.side == side })
        let scan = try await SharedScanner.shared.hip(spec, side, noise: 11)
        ImageDump.hip(scan, nil, name: "standard-hip-\(side)-raw")
        ImageDump.hip(truthScan(spec, scan), nil, name: "standard-hip-\(side)-truth")
        let m = try HipAnalysis.measure(scan)
        ImageDump.hip(scan, m, name: "standard-hip-\(side)")
        let truth = hip.landmarks(midline: spec.midlineMM)
        print(String(format: "%@ hip: head (%.1f, %.1f) r %.0f [truth (%.1f, %.1f) r %.1f]; waist (%.1f, %.1f) [truth (%.1f, %.1f)]; axis (%.3f, %.3f) [truth (%.3f, %.3f)]; width %.1f; NSA %.1f [%.1f]; LT bottom %.1f [%.1f] prominence %.1f; shaft %.1f°",
                     side.rawValue, m.headCentre.xMM, m.headCentre.yMM, m.headRadiusMM, truth.headCentre.x, truth.headCentre.y, truth.headRadiusMM,
                     m.neckWaist.xMM, m.neckWaist.yMM, truth.neckWaist.x, truth.neckWaist.y, m.neckDirection.xMM, m.neckDirection.yMM,
                     truth.neckAxis.x, truth.neckAxis.y, m.neckWidthMM, m.neckShaftAngleDeg, truth.projectedNeckShaftAngleDeg,
                     m.lesserTrochanterBottomYMM ?? .nan, truth.lesserTrochanterBottomY, m.lesserTrochanterMM ?? .nan, m.shaftAngleDeg))
        for r in m.rois {
            let t = femurTruth(spec, hip, m, scan, roi: r.name)
            print(String(format: "  %@: BMD %.4f (truth %.4f, %+.2f %%) area %.2f cm² (truth %.2f) BMC %.3f g", r.name, r.bmdGCm2 ?? .nan, t?.bmd ?? .nan,
                         ((r.bmdGCm2 ?? 0) / (t?.bmd ?? 1) - 1) * 100, r.areaCm2, t?.area ?? .nan, r.bmcG))
        }
        print("  warnings: \(m.warnings.map(\.message))")
        #expect(hypot(m.headCentre.xMM - truth.headCentre.x, m.headCentre.yMM - truth.headCentre.y) < 3)
        #expect(abs(m.neckShaftAngleDeg - truth.projectedNeckShaftAngleDeg) < 5)
        #expect(abs((m.lesserTrochanterBottomYMM ?? 0) - truth.lesserTrochanterBottomY) < 4)
        let total = try #require(m.roi("total_hip")), totalTruth = try #require(femurTruth(spec, hip, m, scan, roi: "total_hip"))
        #expect(abs((total.bmdGCm2 ?? 0) / totalTruth.bmd - 1) < 0.03)
        // The neck's rows run from the pubic ramus at the field's medial edge to the trochanter:
        // the soft tissue under it comes from the lateral side only, where the body is thinner
        // (the decomposer's thickness correction; docs/physics.md).
        let neck = try #require(m.roi("neck")), neckTruth = try #require(femurTruth(spec, hip, m, scan, roi: "neck"))
        #expect(abs((neck.bmdGCm2 ?? 0) / neckTruth.bmd - 1) < 0.03)
        #expect(m.warnings.isEmpty, "\(m.warnings)")
        // The clinical ROIs, with T-scores against NHANES III for the neck and the total hip only.
        let result = HipAnalysis.interpret(m, patient: PatientContext(sex: .female, ageYears: 62))
        #expect(result.rois.map(\.name) == ["neck", "trochanter", "intertrochanter", "total_hip", "wards"])
        #expect(result.rois.filter(\.forDiagnosis).map(\.name) == ["neck", "total_hip"])
        #expect(result.roi("neck")?.tScore != nil && result.roi("total_hip")?.tScore != nil && result.roi("wards")?.tScore == nil)
        #expect(result.site == "\(side)_hip")
    }
}

/// The issue's figures over seeded patients (PatientVariety: sizes, neck–shaft angle 120–135°,
/// anteversion, the leg's rotation in the brace, abduction, density, pelvis, body width):
/// landmarks against the scene's, neck and total hip against the femur's truth in the same
/// pixels; and the variants a hip scan can carry.
@Suite("Hip analysis over many patients", .serialized)
struct HipStudyTests {
    static let patients = Int(ProcessInfo.processInfo.environment["DEXA_HIP_PATIENTS"] ?? "") ?? 50
    /// The first seed of the study (`DEXA_HIP_FIRST`, default 1): a study of patients it was
    /// not developed on, or one patient traced alone.
    static let first = UInt64(ProcessInfo.processInfo.environment["DEXA_HIP_FIRST"] ?? "") ?? 1
    /// Every patient's soft tissue (`DEXA_SOFT_TISSUE`, g/cm²) in place of the drawn 12–26: a
    /// study of obese patients (docs/physics.md, "The thick mode scaled to the need").
    static let softTissue = Double(ProcessInfo.processInfo.environment["DEXA_SOFT_TISSUE"] ?? "")

    @Test func fiftyPatientsHips() async throws {
        var analysed = 0, placed = 0
        var neckErrors: [Double] = [], totalErrors: [Double] = []
        var warned: [String: Int] = [:]
        var failures: [String] = []
        var wrongSide = 0
        var edgeFound: [UInt64] = []
        for seed in Self.first..<(Self.first + UInt64(Self.patients)) {
            var spec = PatientVariety.patient(seed: seed)
            if let soft = Self.softTissue { spec.softTissue = soft }
            // Alternate sides: each patient gives one hip.
            let side: ProximalFemur.Side = seed % 2 == 1 ? .left : .right
            guard let hip = spec.hips.first(where: { $0.side == side }) else { continue }
            var scan = try await SharedScanner.shared.hip(spec, side, noise: 100 + seed)
            var m: HipMeasurement
            do { m = try HipAnalysis.measure(scan) } catch {
                ImageDump.hip(scan, nil, name: "hip-study-\(seed)")
                failures.append("seed \(seed) \(side): \(error)")
                if case .otherSide = error { wrongSide += 1 }
                continue
            }
            // The field is where the exam's protocol puts it, whatever the patient's width: a
            // wide patient's trochanter can reach its edge. The analysis says so, and the
            // technologist moves the field as it asks and scans again (another noise draw):
            // the study counts both.
            if let edge = m.warnings.first(where: { $0.code == "trochanter_at_field_edge" }), let margin = edge.value {
                edgeFound.append(seed)
                let shift = HipAnalysis.Parameters().lateralTissueMM - margin + 10
                scan = try await SharedScanner.shared.hip(spec, side, noise: 10_000 + seed, lateralShiftMM: shift)
                do { m = try HipAnalysis.measure(scan) } catch {
                    failures.append("seed \(seed) \(side), moved \(shift) mm: \(error)")
                    continue
                }
            }
            ImageDump.hip(scan, m, name: "hip-study-\(seed)")
            analysed += 1
            let truth = hip.landmarks(midline: spec.midlineMM)
            let axisError = acos(min(1, abs(m.neckDirection.xMM * truth.neckAxis.x + m.neckDirection.yMM * truth.neckAxis.y))) * 180 / .pi
            let headError = hypot(m.headCentre.xMM - truth.headCentre.x, m.headCentre.yMM - truth.headCentre.y)
            let ltError = abs((m.lesserTrochanterBottomYMM ?? .infinity) - truth.lesserTrochanterBottomY)
            if headError < 4 && axisError < 6 && ltError < 5 { placed += 1 } else {
                failures.append(String(format: "seed %llu %@: head off %.1f mm, axis off %.1f°, lesser trochanter off %+.1f mm (rotation %.0f°, NSA %.0f°)",
                                       seed, side.rawValue, headError, axisError, (m.lesserTrochanterBottomYMM ?? .nan) - truth.lesserTrochanterBottomY,
                                       hip.internalRotationDeg, hip.neckShaftAngleDeg))
            }
            for w in m.warnings { warned[w.code, default: 0] += 1 }
            for (name, errors) in [("neck", 0), ("total_hip", 1)] {
                guard let r = m.roi(name), let bmd = r.bmdGCm2, let t = femurTruth(spec, hip, m, scan, roi: name) else {
                    failures.append("seed \(seed) \(side): no \(name)")
                    continue
                }
                let e = bmd / t.bmd - 1
                if errors == 0 { neckErrors.append(e) } else { totalErrors.append(e) }
                if abs(e) > 0.03 {
                    ImageDump.hip(truthScan(spec, scan), m, name: "hip-study-\(seed)-truth")
                    // Which part of the hip the error sits in.
                    let parts = m.rois.compactMap { part -> String? in
                        guard let b = part.bmdGCm2, let t = femurTruth(spec, hip, m, scan, roi: part.name) else { return nil }
                        return String(format: "%@ %+.2f %% (BMC %.2f of %.2f g)", part.name, (b / t.bmd - 1) * 100, part.bmcG, t.bmc)
                    }
                    failures.append("    " + parts.joined(separator: "; "))
                    failures.append(String(format: "seed %llu %@ %@: %+.2f %% (area %+.1f %%; tissue %.1f, hip half-width %.0f)", seed, side.rawValue, name,
                                           e * 100, (r.areaCm2 / t.area - 1) * 100, spec.softTissue, spec.hipHalfWidthMM ?? 0))
                }
            }
        }
        print("hip study: \(Self.patients) patients (one hip each), \(analysed) analysed, landmarks right in \(placed)")
        print("  neck: \(studyStats(neckErrors))")
        print("  total hip: \(studyStats(totalErrors))")
        print("  warnings: \(warned.sorted { $0.key < $1.key })")
        print("  trochanter at the field's edge, the field moved and the hip scanned again: seeds \(edgeFound)")
        for f in failures { print("  \(f)") }
        // Nine in ten hips analysed have their total hip within 3 % of the truth (all of them is
        // the target, below).
        #expect(analysed >= Self.patients * 9 / 10)
        // Every scan is of the side it says: a refusal naming the other side is a wrong sentence.
        #expect(wrongSide == 0, "\(wrongSide) hips called the other side")
        #expect(totalErrors.count >= analysed && Double(totalErrors.filter { abs($0) <= 0.03 }.count) >= 0.9 * Double(analysed))
        // Every hip analysed since faint bone with no tissue within reach is measured as bone
        // (2026-12-05: three necks crossed by a row that read 0 had been refused as 5–10 mm wide).
        #expect(Double(analysed) >= 0.98 * Double(Self.patients))
        // Every neck within 3 % since long runs are anchored on the tissue earlier lines saw
        // over their own channels (2026-12-05: four necks had read 3.9–7.7 % low).
        #expect(neckErrors.count >= analysed && neckErrors.allSatisfy { abs($0) <= 0.03 })
        // Every total hip within 3 % since a trochanter at the field's edge is said and the
        // field moved (2026-12-05: seed 42's had read 3.2 % low, with 1 mm of tissue beside it).
        #expect(totalErrors.allSatisfy { abs($0) <= 0.03 })
        // Landmarks right in 49 of 50 since the lesser trochanter's lower end is followed down
        // its taper (2026-12-05: five hips turned inwards had it 6–7 mm high; left: seed 46's
        // neck axis 8.9° off, a thin patient).
        #expect(Double(placed) >= 0.98 * Double(Self.patients))
        // Not met yet, and said (docs/analysis.md, "Hips: what the study found"): positioning
        // warnings on 10 of 50 well-positioned hips, 3 of them the stillness check's.
        withKnownIssue("warnings on well-positioned hips (docs/analysis.md)") {
            // No positioning warning on well-positioned patients beyond one in twenty.
            #expect(Double(warned.values.reduce(0, +)) <= 0.05 * Double(analysed), "\(warned)")
        }
    }

    /// The necks traced pixel by pixel (docs/physics.md, "Only tissue is a reference"): bone the
    /// classification missed beside the run (the trochanter to the body's edge under thin
    /// tissue: seeds 5, 21, 26; the pelvis under fatty tissue: seeds 10, 22) was the soft-tissue
    /// reference of a few rows, and the neck read 4–20 % low. Now within 3 % (seed 10 was within
    /// 4 % until long runs were anchored on the tissue over their own channels, 2026-12-05).
    @Test(arguments: [(UInt64(5), 0.03), (10, 0.03), (21, 0.03), (22, 0.03), (26, 0.03)])
    func necksWhoseReferenceHeldBone(_ seed: UInt64, _ limit: Double) async throws {
        let spec = PatientVariety.patient(seed: seed)
        let side: ProximalFemur.Side = seed % 2 == 1 ? .left : .right
        let hip = try #require(spec.hips.first { $0.side == side })
        let scan = try await SharedScanner.shared.hip(spec, side, noise: 100 + seed)
        let m = try HipAnalysis.measure(scan)
        let neck = try #require(m.roi("neck")?.bmdGCm2), truth = try #require(femurTruth(spec, hip, m, scan, roi: "neck"))
        print(String(format: "seed %llu %@ neck: %+.2f %%", seed, side.rawValue, (neck / truth.bmd - 1) * 100))
        #expect(abs(neck / truth.bmd - 1) <= limit)
    }

    @Test(arguments: PatientVariety.HipVariant.allCases)
    func variantsAreFound(_ variant: PatientVariety.HipVariant) async throws {
        let n = max(3, Self.patients / 5)
        var found = 0, analysed = 0, wrongSide = 0
        var notes: [String] = []
        for k in 0..<n {
            let seed = UInt64(500 + 3 * k)
            let spec = PatientVariety.patient(seed: seed, with: variant)
            let side: ProximalFemur.Side = k % 2 == 0 ? .left : .right
            let scan = try await SharedScanner.shared.hip(spec, side, noise: seed)
            let outcome: String
            switch variant {
            case .prosthesis:
                do { _ = try HipAnalysis.measure(scan); outcome = "measured" } catch {
                    outcome = "\(error)"
                    if case .otherSide = error { wrongSide += 1 }
                }
                analysed += 1
                if outcome.contains("metal") { found += 1 }
            case .externallyRotated, .abducted:
                let code = variant == .externallyRotated ? "femur_rotated" : "shaft_not_straight"
                do {
                    let m = try HipAnalysis.measure(scan)
                    analysed += 1
                    ImageDump.hip(scan, m, name: "hip-\(variant)-\(seed)")
                    outcome = "\(m.warnings.map(\.code)) LT \(m.lesserTrochanterMM ?? .nan) shaft \(m.shaftAngleDeg)"
                    if m.warnings.contains(where: { $0.code == code }) { found += 1 }
                } catch {
                    outcome = "\(error)"
                    if case .otherSide = error { wrongSide += 1 }
                }
            }
            notes.append("seed \(seed) \(side): \(outcome)")
        }
        print("hip variant \(variant): found in \(found) of \(analysed) analysed (\(n) scanned)")
        for note in notes { print("  \(note)") }
        // Of the hips analysed, the finding in nine of ten; the refusals are the study's known
        // issue (rows without a soft-tissue reference).
        #expect(analysed >= n / 2)
        #expect(wrongSide == 0, "\(wrongSide) hips called the other side")
        #expect(Double(found) >= 0.9 * Double(analysed))
    }
}

/// Scans that must not give a hip BMD.
@Suite("Hip analysis: bad input")
struct HipBadInputTests {
    @Test func aRightHipLabelledLeftIsRefused() async throws {
        let spec = PatientSpec()
        var scan = try await SharedScanner.shared.hip(spec, .right, noise: 21)
        scan.provenance.region = "left_hip"
        #expect(throws: HipAnalysisError.otherSide(expected: "left")) { try HipAnalysis.measure(scan) }
        if case .failure(let why) = SiteAnalysis.analyze(scan, patient: nil) { #expect(why.message.contains("right hip")) } else { Issue.record("analysed") }
    }

    /// An osteoporotic femur beside a dense ischium: in the field's lowest rows the ischium
    /// carries more mineral than the shaft (checked on the scene), so the run with the most
    /// mineral is not the shaft. The shaft is still found (it is the tube), the head is where it
    /// is, and the hip is not called the other side.
    @Test(arguments: [ProximalFemur.Side.left, .right])
    func anOsteoporoticShaftBesideADenseIschium(_ side: ProximalFemur.Side) async throws {
        var spec = PatientSpec()
        let k = try #require(spec.hips.firstIndex { $0.side == side })
        spec.hips[k].trabecularDensity = 0.14
        spec.hips[k].cortexScale = 0.45
        spec.hips[k].pelvisDensity = 1.1
        let hip = spec.hips[k]
        let scan = try await SharedScanner.shared.hip(spec, side, noise: 26)
        // The premise, on the scene: over the fit's rows the pelvis outweighs the femur.
        let map = BoneMap(scan)
        var femurMineral = 0.0, pelvisMineral = 0.0
        for r in (map.rows - 25)..<map.rows {
            for c in 0..<map.columns {
                let x = map.x(c), y = map.y(r)
                femurMineral += hip.femur(x: x, y: y, midline: spec.midlineMM)
                pelvisMineral += hip.pelvis(x: x, y: y, midline: spec.midlineMM)
            }
        }
        #expect(pelvisMineral > femurMineral, "the scene is not the hard case: pelvis \(pelvisMineral), femur \(femurMineral)")
        let m = try HipAnalysis.measure(scan)
        ImageDump.hip(scan, m, name: "hip-dense-ischium-\(side)")
        let truth = hip.landmarks(midline: spec.midlineMM)
        #expect(hypot(m.headCentre.xMM - truth.headCentre.x, m.headCentre.yMM - truth.headCentre.y) < 4, "\(m.headCentre) against \(truth.headCentre)")
        // The shaft found is the femur's: its centre on the last line is the femur's there.
        let y = m.shaftBottom.yMM
        let femurXs = (0..<4000).map { map.x0 + Double($0) * 0.1 }.filter { hip.femur(x: $0, y: y, midline: spec.midlineMM) > 0 }
        let centre = try #require(femurXs.isEmpty ? nil : (femurXs[0] + femurXs[femurXs.count - 1]) / 2)
        #expect(abs(m.shaftBottom.xMM - centre) < 3, "shaft at \(m.shaftBottom.xMM), the femur's centre at \(centre)")
        print(String(format: "dense ischium, %@ hip: shaft %.1f mm (femur %.1f), neck–shaft angle %.1f° (truth %.1f°)", side.rawValue,
                     m.shaftBottom.xMM, centre, m.neckShaftAngleDeg, truth.projectedNeckShaftAngleDeg))
    }

    /// The hip's warning for soft tissue beyond the calibration, measured over the total hip
    /// (the standard patient's: 14.1 g/cm²): a calibration that reached only 12 g/cm² (an ICD
    /// phantom must reach 31, so a stored scan's reach is lowered here) warns, the simulator's
    /// 31 does not.
    @Test func tissueBeyondTheCalibrationIsSaidOverTheHip() async throws {
        var scan = try await SharedScanner.shared.hip(PatientSpec(), .left, noise: 23)
        #expect(scan.provenance.calibratedSoftTissueGCm2 == 31)
        #expect(!(try HipAnalysis.measure(scan)).warnings.contains { $0.code == "soft_tissue_beyond_calibration" })
        scan.provenance.calibratedSoftTissueGCm2 = 12
        let m = try HipAnalysis.measure(scan)
        let w = try #require(m.warnings.first { $0.code == "soft_tissue_beyond_calibration" }, "\(m.warnings)")
        #expect(w.message.contains("the total hip") && (w.value ?? 0) > 12 && (w.value ?? 0) < 18, "\(w)")
    }

    @Test func aSpineScanIsNotAHip() async throws {
        let scan = try await SharedScanner.shared.scan(PatientSpec(), noise: 22)
        #expect(throws: HipAnalysisError.notAHip("ap spine")) { try HipAnalysis.measure(scan) }
    }

    @Test func noFemurInTheField() async throws {
        var spec = PatientSpec()
        spec.hips = []
        let scan = try await SharedScanner.shared.hip(spec, .left, noise: 23)
        do {
            _ = try HipAnalysis.measure(scan)
            Issue.record("a hip measured with no femur")
        } catch {
            switch error {
            case .noFemur, .headNotFound: break
            default: Issue.record("refused for another reason: \(error)")
            }
        }
    }

    /// Three lines lost through the neck box (a damaged capture): the neck is incomplete and
    /// not used to diagnose, and neither is the total hip (a missing line cuts its fill short).
    @Test func linesMissingThroughTheNeckExcludeIt() async throws {
        let spec = PatientSpec()
        let scan = try await SharedScanner.shared.hip(spec, .left, noise: 25) { !(52..<55).contains($0.index) }
        let m = try HipAnalysis.measure(scan)
        let result = HipAnalysis.interpret(m, patient: PatientContext(sex: .female, ageYears: 70))
        for name in ["neck", "total_hip"] {
            let roi = try #require(result.roi(name))
            #expect(roi.excluded && !roi.complete && roi.reason?.contains("lines of its ROI missing") == true, "\(name): \(roi)")
        }
        #expect(m.warnings.contains { $0.code == "scan_incomplete" })
        #expect(result.interpretation?.whoClass == nil)
    }

    /// Stopped half-way (75 of 150 lines): no total hip (its lower edge is below the last
    /// line), said as such; no number where none is meaningful.
    @Test func aScanStoppedHalfWayGivesNoTotalHip() async throws {
        let spec = PatientSpec()
        let scan = try await SharedScanner.shared.hip(spec, .left, noise: 24) { $0.index < 75 }
        switch SiteAnalysis.analyze(scan, patient: PatientContext(sex: .female, ageYears: 70)) {
        case .success(let r):
            #expect(r.roi("total_hip")?.bmdGCm2 == nil && r.roi("total_hip")?.excluded == true)
            #expect(r.roi("total_hip")?.reason != nil)
        case .failure(let why):
            #expect(!why.message.isEmpty)
        }
    }

    @Test func impossibleGeometryAndEmptyScansAreRefused() throws {
        for (pitch, step, channels, lines) in [(0.0, 1.0, 144, 150), (1.0, .nan, 144, 150), (1.0, 1.0, 1, 150), (1.0, 1.0, 144, 0)] {
            var scan = DecomposedScan(geometry: .init(channels: channels, lines: lines, pitchMM: pitch, lineStepMM: step, carriageXMM: 300, firstLineYMM: 860),
                                      provenance: .init(capture: nil, scanID: 1, calibration: "none", region: "left_hip"))
            scan.rowPresent = [Bool](repeating: true, count: lines)
            #expect(throws: HipAnalysisError.self) { try HipAnalysis.measure(scan) }
        }
        var empty = DecomposedScan(geometry: .init(channels: 144, lines: 150, pitchMM: 1, lineStepMM: 1, carriageXMM: 300, firstLineYMM: 860),
                                   provenance: .init(capture: nil, scanID: 1, calibration: "none", region: "left_hip"))
        empty.rowPresent = [Bool](repeating: true, count: 150)
        #expect(throws: HipAnalysisError.self) { try HipAnalysis.measure(empty) }
    }
}

/// T-scores at the hip against a published worked example.
@Suite("Hip interpretation")
struct HipInterpretationTests {
    /// The issue's example: a femoral neck of 0.53 g/cm² against NHANES III young white women
    /// (0.858 ± 0.120) is T = (0.53 − 0.858) / 0.120 = −2.73, reported −2.7: osteoporosis.
    @Test func aNeckOf053IsOsteoporosis() throws {
        let m = HipMeasurement(side: "left", headCentre: TablePoint(290, 900), headRadiusMM: 23, neckWaist: TablePoint(310, 915),
                               neckDirection: TablePoint(0.8, 0.6), neckWidthMM: 30, shaftTop: TablePoint(335, 960), shaftBottom: TablePoint(335, 1005),
                               neckShaftAngleDeg: 127, shaftAngleDeg: 0, lesserTrochanterBottomYMM: 975, lesserTrochanterMM: 5,
                               neckBox: [], medialCut: [], bottomCut: nil, trochanterLine: nil, wardsBox: nil,
                               rois: [HipROIMeasure(name: "neck", bmdGCm2: 0.53, bmcG: 2.65, areaCm2: 5, missingLines: 0),
                                      HipROIMeasure(name: "total_hip", bmdGCm2: 0.75, bmcG: 26.25, areaCm2: 35, missingLines: 0)],
                               warnings: [], noiseGCm2: 0.03, thresholdGCm2: 0.08)
        let r = HipAnalysis.interpret(m, patient: PatientContext(sex: .female, ageYears: 68))
        #expect(r.roi("neck")?.tScore == -2.7)
        // Total hip: (0.75 − 0.942) / 0.122 = −1.57 → −1.6.
        #expect(r.roi("total_hip")?.tScore == -1.6)
        #expect(r.interpretation?.whoClass == .osteoporosis)
        // Not measured: trochanter, intertrochanter and Ward's, each excluded with a reason.
        for name in ["trochanter", "intertrochanter", "wards"] {
            #expect(r.roi(name)?.excluded == true && r.roi(name)?.reason != nil && r.roi(name)?.bmdGCm2 == nil, "\(name)")
        }
        // The total hip the lower: its class. A neck with lines missing is not used.
        var lower = m
        lower.rois = [HipROIMeasure(name: "neck", bmdGCm2: 0.53, bmcG: 2.65, areaCm2: 5, missingLines: 3),
                      HipROIMeasure(name: "total_hip", bmdGCm2: 0.70, bmcG: 24.5, areaCm2: 35, missingLines: 0)]
        let r2 = HipAnalysis.interpret(lower, patient: PatientContext(sex: .female, ageYears: 68))
        #expect(r2.roi("neck")?.excluded == true)
        // (0.70 − 0.942) / 0.122 = −1.98 → −2.0: low bone mass, on the total hip alone.
        #expect(r2.roi("total_hip")?.tScore == -2.0 && r2.interpretation?.whoClass == .lowBoneMass)
        // A man under 50: no WHO class.
        #expect(HipAnalysis.interpret(m, patient: PatientContext(sex: .male, ageYears: 40)).interpretation?.whoClass == nil)
    }
}

func studyStats(_ e: [Double]) -> String {
    let mean = e.reduce(0, +) / Double(max(1, e.count))
    let sd = (e.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(max(1, e.count - 1))).squareRoot()
    let worst = e.max { abs($0) < abs($1) } ?? 0
    return String(format: "mean %+.2f %%, SD %.2f %%, worst %+.2f %% (n %d)", mean * 100, sd * 100, worst * 100, e.count)
}

/// The scene's own bone as a decomposed scan would show it, noiseless (for looking).
func truthScan(_ spec: PatientSpec, _ like: DecomposedScan) -> DecomposedScan {
    var s = like
    let map = BoneMap(like)
    let scene = PatientScene(spec)
    for r in 0..<like.geometry.lines {
        for c in 0..<like.geometry.channels {
            let row = like.geometry.lineStepMM < 0 ? like.geometry.lines - 1 - r : r
            s.bone[row * like.geometry.channels + c] = Float(scene.composition(xUm: Int32(map.x(c) * 1000), yUm: Int32(map.y(r) * 1000)).hydroxyapatite)
        }
    }
    return s
}

