@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// Parametric patients: the scene's truth, and the host's decomposition of them.
@Suite("Parametric patients")
struct PatientTests {
    /// Mean decomposed bone mineral over the pixels whose truth is `select`, and the truth there.
    static func measure(_ scene: any Scene, scanner: inout Scanner, stage: AttenuationStage, calibration: Calibration,
                        y0: Int32, y1: Int32, select: (Composition) -> Bool) throws -> (measured: Double, truth: Double, pixels: Int) {
        let lines = scanner.scan(scene, y0: y0, y1: y1, stepUm: 500, periodUs: 40_000, currentUA: 3000)
        let prepared = stage.prepared(periodUs: 40_000, currentUA: 3000, calibration: calibration)
        let decomposer = Decomposer(calibration: calibration)
        var sum = 0.0, truth = 0.0, n = 0
        for l in lines {
            let d = decomposer.decompose(try prepared.process(l))
            for c in 0..<d.bone.count {
                let x = scanner.detector.channelX(c, carriageX: l.xUm)
                // Whole pixels only: away from the structure's edges (±1.5 mm).
                let here = scene.composition(xUm: x, yUm: l.yUm)
                guard select(here), select(scene.composition(xUm: x - 1500, yUm: l.yUm)), select(scene.composition(xUm: x + 1500, yUm: l.yUm)),
                      select(scene.composition(xUm: x, yUm: l.yUm - 1500)), select(scene.composition(xUm: x, yUm: l.yUm + 1500)),
                      d.bone[c].isFinite else { continue }
                sum += d.bone[c]; truth += here.hydroxyapatite; n += 1
            }
        }
        return (n > 0 ? sum / Double(n) : .nan, n > 0 ? truth / Double(n) : .nan, n)
    }

    @Test(arguments: [(0.3, 0.3), (0.1, 0.5)])
    func apSpineVertebraeWithinOnePercent(fatRight: Double, fatLeft: Double) throws {
        var s = Scanner(seed: 31)
        let (stage, cal) = try s.calibrate()
        var spec = PatientSpec()
        spec.fatFractionRight = fatRight
        spec.fatFractionLeft = fatLeft
        let scene = PatientScene(spec)
        for v in spec.spine.layout.filter({ $0.name.hasPrefix("L") }).prefix(4) {
            let r = try Self.measure(scene, scanner: &s, stage: stage, calibration: cal, y0: Int32(v.topY * 1000) - 10_000,
                                     y1: Int32(v.bottomY * 1000) + 10_000) { abs($0.hydroxyapatite - v.bodyBMD) < 1e-9 }
            let error = (r.measured - r.truth) / r.truth
            print(String(format: "patient (fat %.1f→%.1f) %@: %.4f g/cm² (truth %.3f, %+.2f %%, %d pixels)", fatRight, fatLeft, v.name,
                         r.measured, r.truth, error * 100, r.pixels))
            #expect(r.pixels > 300)
            #expect(abs(error) <= 0.01, "\(v.name): \(r.measured) vs \(r.truth)")
        }
    }

    @Test func hipsOnBothSides() throws {
        var s = Scanner(seed: 32)
        let (stage, cal) = try s.calibrate()
        let spec = PatientSpec()
        for hip in spec.hips {
            // The scanner's 144 mm field centred over this hip.
            var shifted = spec
            shifted.midlineMM = hip.side == .left ? 200 - hip.headOffsetMM - 20 : 200 + hip.headOffsetMM + 20
            let scene = PatientScene(shifted)
            // The femur and the pelvis around it: every pixel with bone at and around it.
            let r = try Self.measure(scene, scanner: &s, stage: stage, calibration: cal, y0: Int32(hip.headYMM - 40) * 1000,
                                     y1: Int32(hip.headYMM + 100) * 1000) { $0.hydroxyapatite > 0.2 }
            let error = (r.measured - r.truth) / r.truth
            print(String(format: "%@ hip bone: %.4f g/cm² (truth %.3f, %+.2f %%, %d pixels)", hip.side.rawValue, r.measured, r.truth,
                         error * 100, r.pixels))
            #expect(r.pixels > 1000, "\(hip.side)")
            // The hips lie where the body thins fast (the soft tissue's hardening changes
            // across the bone): 3 %, against 1 % on the spine.
            #expect(abs(error) <= 0.03, "\(hip.side): \(r.measured) vs \(r.truth)")
        }
    }

    @Test func lateralViewAndGenantFractures() throws {
        var spec = PatientSpec()
        let t12 = try #require(spec.thoracolumbar.firstIndex { $0.name == "T12" })
        let healthy = spec.thoracolumbar[t12]
        for kind in PatientSpec.LateralVertebra.Fracture.allCases {
            for grade in 1...3 {
                let f = healthy.fractured(kind, grade: grade)
                let h = max(healthy.anteriorMM, healthy.middleMM, healthy.posteriorMM)
                let (a, m, p) = (1 - f.anteriorMM / h, 1 - f.middleMM / h, 1 - f.posteriorMM / h)
                let lost = kind == .wedge ? a : (kind == .biconcave ? m : min(a, m, p))
                // Genant: grade 1 is 20–25 %, 2 is 25–40 %, 3 over 40 % loss of height.
                let range = [1: 0.20...0.25, 2: 0.25...0.40, 3: 0.40...1.0][grade] ?? 0...0
                #expect(range.contains(lost), "\(kind) grade \(grade): \(lost)")
            }
        }
        spec.thoracolumbar[t12] = healthy.fractured(.wedge, grade: 2)
        let scene = PatientScene(spec)
        // The side view sees the fracture: the bone's height at the anterior edge, counted in
        // 0.5 mm steps through the scene's truth, is 32 % less than at the posterior edge.
        let lateral = scene.projection(armAngleX10: 900)
        let v = spec.thoracolumbar[t12]
        func height(atDepth t: Double) -> Double {
            let x = Int32((spec.lateralSpineXMM + t * v.depthMM) * 1000)
            var n = 0
            let tallest = max(v.anteriorMM, v.middleMM, v.posteriorMM)
            for y in stride(from: Int32((v.topMM - 2) * 1000), to: Int32((v.topMM + tallest + 2) * 1000), by: 500)
                where lateral.composition(xUm: x, yUm: y).hydroxyapatite >= v.bmd - 1e-9 { n += 1 }  // the body's, not a rib's alone
            return Double(n) * 0.5
        }
        let anterior = height(atDepth: 0.97), posterior = height(atDepth: 0.03)
        print(String(format: "T12 wedge grade 2: anterior %.1f mm, posterior %.1f mm", anterior, posterior))
        #expect(anterior < posterior * 0.75)
        // The front view has no thoracolumbar bodies of its own; the side view no hips.
        #expect(scene.projection(armAngleX10: 0).composition(xUm: Int32((spec.lateralSpineXMM + 10) * 1000), yUm: Int32((v.topMM + 10) * 1000)).hydroxyapatite == 0)
    }

    @Test func motionShiftsTheBodyFromALineOn() throws {
        var spec = PatientSpec()
        spec.motion = .init(fromYMM: 650, shiftXMM: 2)
        let moved = PatientScene(spec), still = PatientScene()
        // Before the movement nothing differs; after it, everything is 2 mm across.
        #expect(moved.composition(xUm: 180_000, yUm: 640_000) == still.composition(xUm: 180_000, yUm: 640_000))
        #expect(moved.composition(xUm: 182_000, yUm: 660_000) == still.composition(xUm: 180_000, yUm: 660_000))
        // Just beyond L2's side at its waist: soft tissue before, bone after the movement.
        let l2 = try #require(spec.spine.layout.first { $0.name == "L2" })
        let x = Int32((spec.midlineMM + l2.centreX + l2.halfWidthMM - 2.5 + 1) * 1000), y = Int32(l2.centreY * 1000)
        #expect(still.composition(xUm: x, yUm: y).hydroxyapatite == 0)
        #expect(moved.composition(xUm: x, yUm: y).hydroxyapatite > 0, "the vertebra's edge moved right by 2 mm")
    }

    @Test func metalIsFlaggedNotMeasured() throws {
        var s = Scanner(seed: 33)
        let (stage, cal) = try s.calibrate()
        var spec = PatientSpec()
        spec.metal = [.init(name: "pedicle screw", xMM: [192, 198], yMM: [640, 660])]
        let lines = s.scan(PatientScene(spec), y0: 645_000, y1: 655_000, stepUm: 500, periodUs: 40_000, currentUA: 3000)
        let prepared = stage.prepared(periodUs: 40_000, currentUA: 3000, calibration: cal)
        let decomposer = Decomposer(calibration: cal)
        var flagged = 0
        for l in lines {
            let d = decomposer.decompose(try prepared.process(l))
            for c in 0..<d.bone.count {
                let x = s.detector.channelX(c, carriageX: l.xUm)
                if x >= 193_000 && x < 197_000 {
                    // Behind metal the detector reads its dark level: no number, a flag.
                    #expect(d.bone[c].isNaN, "channel \(c): \(d.bone[c]) \(l.low(c)) \(l.high(c))")
                    if d.flags[c].contains(.photonStarved) || d.flags[c].contains(.belowDark) { flagged += 1 }
                }
            }
        }
        print("metal: \(flagged) pixels flagged")
        #expect(flagged == 4 * lines.count)
    }

    @Test func aPatientFromJSONKeepsTheDefaultsItDoesNotName() throws {
        let spec = try PatientSpec.overriding(with: ["softTissue": 22.0, "motion": ["fromYMM": 700.0, "shiftXMM": -3.0],
                                                     "metal": [["name": "hip prosthesis", "xMM": [280.0, 300.0], "yMM": [880.0, 1000.0]]]])
        #expect(spec.softTissue == 22)
        #expect(spec.motion.shiftXMM == -3)
        #expect(spec.metal.first?.hydroxyapatiteEquivalent == 15)
        #expect(spec.spine == PatientSpec().spine)
        #expect(throws: (any Error).self) { try PatientSpec.overriding(with: ["softTissue": "thick"]) }
    }
}

@Suite("Exposure modes")
struct ExposureModeTests {
    /// The exam's AP spine (220 lines of 1 mm, 1 s at 0.4 mA): a scout first, the mode from it.
    static let apSpine = ScanConfiguration(scanID: 0, mode: .dual, xUm: 200_000, yStartUm: 580_000, lineCount: 220,
                                           lineStepUm: Scanner.LineProtocol.examAPSpine.stepUm,
                                           linePeriodUs: Scanner.LineProtocol.examAPSpine.periodUs,
                                           tubeCurrentUA: Scanner.LineProtocol.examAPSpine.currentUA, linesPerFrame: 1)

    static func choose(_ scene: any Scene, _ s: inout Scanner, stage: AttenuationStage, bmi: Double? = nil, calibration: Calibration? = nil) -> ExposureModeChooser.Choice {
        let scout = ExposureModeChooser.scout(of: apSpine)
        let lines = s.scan(scene, y0: scout.yStartUm, y1: scout.yStartUm + Int32(scout.lineCount) * scout.lineStepUm, stepUm: scout.lineStepUm,
                           periodUs: scout.linePeriodUs, currentUA: scout.tubeCurrentUA)
        return ExposureModeChooser().choose(scout: lines, scoutPeriodUs: scout.linePeriodUs, scoutCurrentUA: scout.tubeCurrentUA, dark: stage.dark,
                                            periodUs: apSpine.linePeriodUs, currentUA: apSpine.tubeCurrentUA, bmi: bmi,
                                            unmixing: calibration?.unmixing, boneNoise: calibration?.boneNoise)
    }

    /// L1–L4 of `spec` scanned in `current`, over whole bone pixels, against the scene's truth.
    static func lumbar(_ spec: PatientSpec, current: UInt32, _ s: inout Scanner, stage: AttenuationStage,
                       cal: Calibration) throws -> (error: Double, pixels: Int, starved: Int) {
        let scene = PatientScene(spec)
        let lumbar = spec.spine.layout.filter { $0.name.hasPrefix("L") }
        let y0 = Int32(lumbar[0].topY * 1000) - 5_000, y1 = Int32(lumbar[3].bottomY * 1000) + 5_000
        let lines = s.scan(scene, y0: y0, y1: y1, stepUm: 1000, periodUs: apSpine.linePeriodUs, currentUA: current)
        let prepared = stage.prepared(periodUs: apSpine.linePeriodUs, currentUA: current, calibration: cal)
        let decomposer = Decomposer(calibration: cal)
        var sum = 0.0, truth = 0.0, n = 0, starved = 0
        for l in lines {
            let d = decomposer.decompose(try prepared.process(l))
            for c in 0..<d.bone.count {
                let x = s.detector.channelX(c, carriageX: l.xUm)
                let here = scene.composition(xUm: x, yUm: l.yUm)
                func bone(_ dx: Int32, _ dy: Int32) -> Bool { scene.composition(xUm: x + dx, yUm: l.yUm + dy).hydroxyapatite > 0.5 }
                // The vertebrae only: within 40 mm of the midline (the iliac crests enter the
                // field beside L4–L5).
                guard abs(Double(x) / 1000 - spec.midlineMM) < 40, here.hydroxyapatite > 0.5, bone(-1500, 0), bone(1500, 0), bone(0, -1500), bone(0, 1500), d.bone[c].isFinite else { continue }
                sum += d.bone[c]; truth += here.hydroxyapatite; n += 1
                if d.flags[c].contains(PixelFlags.photonStarved) { starved += 1 }
            }
        }
        return (n > 0 ? (sum - truth) / truth : .nan, n, starved)
    }

    /// Patients of 30 g/cm² of soft tissue: the scout chooses the thick mode by itself, and
    /// L1–L4 reads within the issue's 1 % (+0.01 %; fat fraction 0.2: lean 24, fat 6 g/cm²),
    /// also at fat fraction 0.3 (9 g/cm² of fat, beyond the phantom's 6: −0.44 %). The
    /// standard mode reads +1.13 %: the two modes differ by 1.1 %, which the opening's noise
    /// bias explains (noisy tissue called bone pulls the reference down, more in the noisier
    /// mode; docs/physics.md, "The tissue matrix in the exam's modes"); a fix that made the
    /// modes agree made obese patients' femoral necks worse and was not kept. A known issue.
    /// A patient of the default 18 g/cm² gets the standard mode, a thin one (8 g/cm²) thin.
    @Test func aThickPatientIsScannedThick() throws {
        var s = Scanner(seed: 81)
        let (stage, cal) = try s.calibrate()
        var thick = PatientSpec()
        thick.softTissue = 30
        thick.fatFractionLeft = 0.2
        thick.fatFractionRight = 0.2
        var fatter = thick
        fatter.fatFractionLeft = 0.3
        fatter.fatFractionRight = 0.3
        var thin = PatientSpec()
        thin.softTissue = 8
        let standardChoice = Self.choose(PatientScene(), &s, stage: stage)
        let thinChoice = Self.choose(PatientScene(thin), &s, stage: stage)
        let choice = Self.choose(PatientScene(thick), &s, stage: stage)
        let fatterChoice = Self.choose(PatientScene(fatter), &s, stage: stage)
        for (label, c) in [("18 g/cm²", standardChoice), ("8 g/cm²", thinChoice), ("30 g/cm², fat 0.2", choice), ("30 g/cm², fat 0.3", fatterChoice)] {
            print("scout, patient of \(label): \(c.mode) (\(c.reason))")
        }
        #expect(standardChoice.mode == .standard)
        #expect(thinChoice.mode == .thin)
        #expect(choice.mode == .thick && fatterChoice.mode == .thick)
        let current = choice.current(standard: Self.apSpine.tubeCurrentUA)
        #expect(current == 1000)
        let inRange = try Self.lumbar(thick, current: current, &s, stage: stage, cal: cal)
        let beyond = try Self.lumbar(fatter, current: current, &s, stage: stage, cal: cal)
        let standardMode = try Self.lumbar(thick, current: Self.apSpine.tubeCurrentUA, &s, stage: stage, cal: cal)
        print(String(format: "30 g/cm² (fat 6), thick mode: L1–L4 %+.2f %% (%d pixels, %d photon-starved); in the standard mode %+.2f %% (%d starved)",
                     inRange.error * 100, inRange.pixels, inRange.starved, standardMode.error * 100, standardMode.starved))
        print(String(format: "30 g/cm² (fat 9, beyond the phantom), thick mode: L1–L4 %+.2f %%", beyond.error * 100))
        #expect(inRange.pixels > 1000)
        #expect(abs(inRange.error) <= 0.01)
        #expect(abs(beyond.error) <= 0.01)
        withKnownIssue("thick and standard modes differ on the anatomical spine: +0.01 % against +1.13 % (the opening's noise bias)") {
            #expect(abs(inRange.error - standardMode.error) < 0.005)
        }
        // Without a scout the body mass index decides.
        let none = ExposureModeChooser().choose(scout: [], scoutPeriodUs: 1, scoutCurrentUA: 1, dark: stage.dark, periodUs: 1, currentUA: 1, bmi: 34)
        #expect(none.mode == .thick && none.reason.contains("34.0"))
        #expect(ExposureMode.thick.current(standard: 2000) == ExposureMode.maximumCurrentUA)
    }

    /// A patient of 30 g/cm² (lean 24, fat 6) on eight units of the second physics model's
    /// detector (seeds 76–83: each its own channels' gains and trims and its own calibration;
    /// pile-up and scatter off, as in the tissue matrix). The scout judges the unmixed low
    /// window's photons and the bone noise they give with the unit's calibration
    /// (`ExposureModeChooser.BoneNoise`): every unit is scanned thick, most for their bone noise
    /// where their photons alone (150–360) pass the photon rule. Where the calibration kept its
    /// models continued by the phantom's spectra, L1–L4 reads within 1 % (the standard mode
    /// reads up to +3.1 %: the noise's selection). Where the calibration set the continuation
    /// aside (its continued models failed the acceptance rule on the phantom's cells: seeds
    /// 77, 79 and 83, 3 of 30 units in seeds 60–89) the cells alone read the patient low, by
    /// −1.3 to −3.1 % (seed 79 −0.8 to −1.3 % by its noise): a known issue (docs/physics.md,
    /// "Bone noise, not photons").
    @Test(arguments: Array(UInt64(76)...UInt64(83)))
    func aThickPatientOnTheSecondModelsDetector(seed: UInt64) throws {
        var s = SecondModelTissueTests.scanner(seed: seed)
        let (stage, cal) = try s.calibrate()
        #expect(cal.verdict.accepted, "\(cal.verdict)")
        let continued = cal.extensionSetAside == nil
        var thick = PatientSpec()
        thick.softTissue = 30
        thick.fatFractionLeft = 0.2
        thick.fatFractionRight = 0.2
        let choice = Self.choose(PatientScene(thick), &s, stage: stage, calibration: cal)
        #expect(choice.mode == .thick, "\(choice.reason)")
        let current = choice.current(standard: Self.apSpine.tubeCurrentUA)
        let inThick = try Self.lumbar(thick, current: current, &s, stage: stage, cal: cal)
        let inStandard = try Self.lumbar(thick, current: Self.apSpine.tubeCurrentUA, &s, stage: stage, cal: cal)
        print(String(format: "second model's detector, seed %d (mixing %.3f, models %@): 30 g/cm², %@ ×%.1f (%.0f photons, bone SD %.2f g/cm², κ %.2f): L1–L4 %+.2f %% (%d pixels, %d photon-starved); standard mode %+.2f %%",
                     Int(seed), cal.lowWindowMixing ?? 0, continued ? "continued" : "of the cells alone", choice.mode.rawValue, choice.currentFactor,
                     choice.predictedDensestCounts ?? .nan, choice.predictedDensestBoneSD ?? .nan,
                     (choice.predictedDensestBoneSD ?? .nan) * (choice.predictedDensestCounts ?? .nan).squareRoot(), inThick.error * 100, inThick.pixels, inThick.starved,
                     inStandard.error * 100))
        #expect(inThick.pixels > 1000)
        // The units whose calibration sets its continuation aside are known (3 of 30 in seeds
        // 60–89): another here means the calibration changed.
        #expect(continued == ![77, 79, 83].contains(seed), "seed \(seed): continuation \(continued ? "kept" : "set aside")")
        if continued {
            #expect(abs(inThick.error) <= 0.01)
        } else {
            // −1.7 % on seed 77 and −3.1 % on 83 every time; −0.8 to −1.3 % on 79, by its noise.
            #expect(abs(inThick.error) <= 0.05)
            withKnownIssue("a calibration whose continuation was set aside reads the thick patient low (issue 10)", isIntermittent: seed == 79) {
                #expect(abs(inThick.error) <= 0.01)
            }
        }
    }

    /// The default patient (18 g/cm²) on that detector: thin (it counts more photons than the
    /// first model's: the brightest tenth passes 55,000 in the standard mode), and its densest
    /// tenth's bone noise within the limit at the thin mode's current.
    @Test func theDefaultPatientOnTheSecondModelsDetectorIsThin() throws {
        var s = SecondModelTissueTests.scanner(seed: 81)
        let (stage, cal) = try s.calibrate()
        let choice = Self.choose(PatientScene(), &s, stage: stage, calibration: cal)
        #expect(choice.mode == .thin, "\(choice.reason)")
        let sd = try #require(choice.predictedDensestBoneSD)
        #expect(sd / choice.currentFactor.squareRoot() < ExposureModeChooser().boneNoiseAbove, "\(choice.reason)")
        #expect(!choice.reason.contains("no mode keeps both"), "\(choice.reason)")
    }
}

@Suite("Exposure mode rules")
struct ExposureModeRuleTests {
    /// Hand-made scouts (a flat line of counts over the central channels): each rule, and the
    /// cross-checks that keep a mode from breaking the other limit.
    static func choose(low: Double, high: Double, currentUA: UInt32 = 100, unmixing: ExposureModeChooser.Unmixing? = nil) -> ExposureModeChooser.Choice {
        let dark = try? DarkReference(lines: [ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [], samples: [UInt16](repeating: 200, count: 2 * 40))])
        let samples = (0..<40).flatMap { _ in [UInt16(200 + low), UInt16(200 + high)] }
        let line = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [.xrayOn], samples: samples)
        // Scout and scan alike: the counts are the prediction.
        return ExposureModeChooser().choose(scout: [line], scoutPeriodUs: 1000, scoutCurrentUA: currentUA, dark: dark ?? .empty,
                                            periodUs: 1000, currentUA: currentUA, bmi: nil, unmixing: unmixing)
    }

    /// A detector whose low window holds the high window's photons (the second physics model:
    /// K-escape, charge sharing) is judged by the photons its unmixed low window has: the
    /// counts recorded overstate them, and a scout that counted them chose the standard mode
    /// for 30 g/cm² (270 counts, 83 photons: docs/physics.md).
    @Test func theUnmixedLowWindowsPhotonsDecide() {
        let u = ExposureModeChooser.Unmixing(fraction: 0.2, airLowOverHigh: 1)
        // (1000 − 0.2·2000)² / (1000 + 0.04·2000) = 360,000 / 1,080.
        #expect(abs(u.photons(low: 1000, high: 2000) - 333.333_333) < 1e-5)
        #expect(ExposureModeChooser.Unmixing(fraction: 0, airLowOverHigh: 1).photons(low: 1000, high: 2000) == 1000)
        // All of the low window the high window's, or more (noise): no photons of its own.
        #expect(u.photons(low: 400, high: 2000) == 0)
        #expect(u.photons(low: 300, high: 2000) == 0)
        // 300 counts in the low window and 1,000 in the high: standard by the counts, thick by
        // the photons ((300 − 200)² / (300 + 40) = 29), and at 7.5 times (29 · 5 < 150).
        let counted = Self.choose(low: 300, high: 1000)
        let unmixed = Self.choose(low: 300, high: 1000, unmixing: u)
        #expect(counted.mode == .standard && counted.predictedDensestCounts == 300)
        #expect(unmixed.mode == .thick && unmixed.predictedDensestCounts == 29)
        #expect(unmixed.currentFactor == 7.5 && unmixed.reason.contains("unmixed"), "\(unmixed.reason)")
        // A detector whose windows do not mix: the same choice as without.
        #expect(Self.choose(low: 300, high: 1000, unmixing: ExposureModeChooser.Unmixing(fraction: 0, airLowOverHigh: 1.2)).mode == .standard)
    }

    /// The bone noise decides where the photons do not: a detector of κ = 6 (g/cm² × √photon,
    /// the second physics model's densest cells) at 321 photons has 0.33 g/cm² a pixel, over
    /// the 0.20 allowed: thick, and at 5 times (2.5 leaves 0.21). At 600 photons, 0.24: 2.5
    /// times (0.15). A detector of κ = 2.9 (the first model's) at 321 photons: standard (0.16);
    /// at 200, 0.205: thick at 2.5 times. The photon rule still holds where it is the stricter.
    @Test func theBoneNoiseDecidesWherePhotonsDoNot() {
        let noisy = ExposureModeChooser.BoneNoise(cells: [(1, 6)]), quiet = ExposureModeChooser.BoneNoise(cells: [(1, 2.9)])
        func choose(_ photons: Double, _ noise: ExposureModeChooser.BoneNoise?) -> ExposureModeChooser.Choice {
            let dark = try? DarkReference(lines: [ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [], samples: [UInt16](repeating: 200, count: 2 * 40))])
            let line = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [.xrayOn], samples: (0..<40).flatMap { _ in [UInt16(200 + photons), UInt16(200 + 3 * photons)] })
            return ExposureModeChooser().choose(scout: [line], scoutPeriodUs: 1_000_000, scoutCurrentUA: 400, dark: dark ?? .empty,
                                                periodUs: 1_000_000, currentUA: 400, bmi: nil, boneNoise: noise)
        }
        let a = choose(321, noisy), b = choose(600, noisy), c = choose(321, quiet), d = choose(200, quiet), e = choose(100, quiet)
        #expect(a.mode == .thick && a.currentFactor == 5 && abs((a.predictedDensestBoneSD ?? 0) - 6 / 321.0.squareRoot()) < 0.001, "\(a.reason)")
        #expect(a.reason.contains("bone noise of 0.33") && !a.reason.contains("fewer than"), "\(a.reason)")
        #expect(b.mode == .thick && b.currentFactor == 2.5, "\(b.reason)")
        #expect(c.mode == .standard && c.reason.contains("bone noise 0.16"), "\(c.reason)")
        #expect(d.mode == .thick && d.currentFactor == 2.5 && d.reason.contains("bone noise of 0.21"), "\(d.reason)")
        #expect(e.mode == .thick && e.currentFactor == 2.5 && e.reason.contains("fewer than 150"), "\(e.reason)")
        // Both short: 110 photons and κ 6 (0.57 g/cm²): both said; 2.5 times gives 275 photons
        // but 0.36 g/cm², 5 times 0.26, 7.5 times 0.21: the noise raises the step to the last,
        // and the reason says what is still lacking there.
        let f = choose(110, noisy)
        #expect(f.mode == .thick && f.currentFactor == 7.5, "\(f.reason)")
        #expect(f.reason.contains("110 photons (fewer than 150)") && f.reason.contains("bone noise of 0.57") && f.reason.contains("still a bone noise of 0.21"),
                "\(f.reason)")
        // 30 photons of κ 6 (1.10 g/cm²): 7.5 times leaves 0.40: said.
        let g = choose(30, noisy)
        #expect(g.mode == .thick && g.currentFactor == 7.5 && g.reason.contains("still a bone noise of 0.40"), "\(g.reason)")
        // The ICD's 3 mA: at 1 mA standard only 3 times is allowed (2.5): still short, said.
        let dark = try? DarkReference(lines: [ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [], samples: [UInt16](repeating: 200, count: 2 * 40))])
        let line = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [.xrayOn], samples: (0..<40).flatMap { _ in [UInt16(200 + 200), UInt16(200 + 600)] })
        let icd = ExposureModeChooser().choose(scout: [line], scoutPeriodUs: 400_000, scoutCurrentUA: 1000, dark: dark ?? .empty,
                                               periodUs: 400_000, currentUA: 1000, bmi: nil, boneNoise: noisy)
        #expect(icd.mode == .thick && icd.currentFactor == 2.5 && icd.reason.contains("3 mA") && icd.reason.contains("still a bone noise"), "\(icd.reason)")
        // Without the calibration's noise per photon: the photons alone, as before.
        #expect(choose(200, nil).mode == .standard && choose(200, nil).predictedDensestBoneSD == nil)
        // κ between the cells by their photons per ms·mA (a Gaussian in the logarithm, half a
        // factor of two wide); beyond the densest cell continued along the cells' slope (here
        // −4 per ln 100: 0.01 is as far beyond as 100 is from 1, so 6 + 4); beyond the thinnest
        // the nearest.
        let two = ExposureModeChooser.BoneNoise(cells: [(1, 6), (100, 2)])
        #expect(abs((two.kappa(photonsPerMsMA: 0.01) ?? 0) - 10) < 1e-6)
        #expect(abs((two.kappa(photonsPerMsMA: 10_000) ?? 0) - 2) < 1e-6)
        // κ that falls as the transmission falls (not a detector's, but a calibration's noise
        // may say so): not continued downwards.
        let odd = ExposureModeChooser.BoneNoise(cells: [(1, 2), (100, 6)])
        #expect(abs((odd.kappa(photonsPerMsMA: 0.01) ?? 0) - 2) < 1e-6)
        #expect(abs((two.kappa(photonsPerMsMA: 10) ?? 0) - 4) < 1e-6)
        #expect(ExposureModeChooser.BoneNoise(cells: []).kappa(photonsPerMsMA: 1) == nil)
        #expect(two.boneSD(photons: 0, msMA: 400) == nil && two.boneSD(photons: 100, msMA: 0) == nil)
        // Thin when the brightest tenth saturates, even where the thin mode's photons leave the
        // densest tenth's bone noise over the limit: said. A line of 60,000 counts in 20 channels
        // and 320 in the other 20 (all central): brightest over 55,000; the densest 320 photons
        // of κ 6 get 160 at half the current, 0.47 g/cm².
        let mixed = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [.xrayOn],
                             samples: (0..<40).flatMap { c in c % 2 == 0 ? [UInt16(200 + 320), UInt16(200 + 960)] : [UInt16(60_200), UInt16(60_200)] })
        let thin = ExposureModeChooser().choose(scout: [mixed], scoutPeriodUs: 1_000_000, scoutCurrentUA: 400, dark: dark ?? .empty,
                                                periodUs: 1_000_000, currentUA: 400, bmi: nil, boneNoise: noisy)
        #expect(thin.mode == .thin && thin.reason.contains("no mode keeps both") && thin.reason.contains("bone noise of 0.47") && !thin.reason.contains("fewer than"), "\(thin.reason)")
        // Standard when the thick mode would bring the brightest tenth over `thinAbove`, even
        // where the densest tenth's bone noise is over the limit: said. 30,000 counts in 20
        // channels (75,000 at 2.5 times) and 321 photons of κ 6 (0.33 g/cm²) in the other 20.
        let bright = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [.xrayOn],
                              samples: (0..<40).flatMap { c in c % 2 == 0 ? [UInt16(200 + 321), UInt16(200 + 963)] : [UInt16(30_200), UInt16(30_200)] })
        let kept = ExposureModeChooser().choose(scout: [bright], scoutPeriodUs: 1_000_000, scoutCurrentUA: 400, dark: dark ?? .empty,
                                                periodUs: 1_000_000, currentUA: 400, bmi: nil, boneNoise: noisy)
        #expect(kept.mode == .standard && kept.currentFactor == 1, "\(kept.reason)")
        #expect(kept.reason.contains("bone noise of 0.33") && kept.reason.contains("thick mode would bring the brightest tenth over 55000")
                && !kept.reason.contains("fewer than"), "\(kept.reason)")
        #expect(abs((kept.predictedDensestBoneSD ?? 0) - 6 / 321.0.squareRoot()) < 0.001)
    }

    /// The air beyond a body's edge is left out of the brightest tenth even with the channels'
    /// gains spread ±8 %; a line with no edge is all body.
    @Test func airBeyondTheBodysEdgeIsNotBody() {
        var counts: [Double] = (0..<144).map { (c: Int) -> Double in
            let gain = 0.92 + 0.16 * Double((c * 37) % 11) / 10
            return c < 100 ? 20_000 : 60_000 * gain
        }
        #expect(ExposureModeChooser.bodyChannels(counts) == 0..<98)
        counts = [Double](repeating: 30_000, count: 144)
        #expect(ExposureModeChooser.bodyChannels(counts) == 0..<144)
        // Air on both sides.
        counts = (0..<144).map { (c: Int) -> Double in (20..<120).contains(c) ? 15_000 : 60_000 }
        #expect(ExposureModeChooser.bodyChannels(counts) == 22..<118)
        // The heel effect: one side's air a third under the other's (the second physics model),
        // and the partial channel at each edge.
        counts = (0..<144).map { (c: Int) -> Double in
            let gain = 0.92 + 0.16 * Double((c * 37) % 11) / 10
            return c == 12 || c == 131 ? 2_600 : (12..<132).contains(c) ? 250 : (c < 12 ? 45_000 : 61_000) * gain
        }
        #expect(ExposureModeChooser.bodyChannels(counts) == 14..<130)
        // Body at the field's edge under half the air is body, plateau or not.
        counts = (0..<144).map { (c: Int) -> Double in c < 40 ? 8_000 + Double(c) * 400 : (c < 120 ? 20_000 : 60_000) }
        #expect(ExposureModeChooser.bodyChannels(counts) == 0..<118)
        // The two edge channels' gains 16 % apart (0.92 and 1.08), and a dead edge channel: the
        // air is still air.
        counts = (0..<144).map { (c: Int) -> Double in c == 0 ? 55_200 : c == 1 ? 64_800 : (c < 20 ? 60_000 : 15_000) }
        #expect(ExposureModeChooser.bodyChannels(counts) == 22..<144)
        counts[0] = 0
        #expect(ExposureModeChooser.bodyChannels(counts) == 22..<144)
    }

    @Test func eachRuleAndItsCrossCheck() {
        #expect(Self.choose(low: 2000, high: 20000).mode == .standard)
        let thick = Self.choose(low: 100, high: 1000)
        #expect(thick.mode == .thick && thick.currentFactor == 2.5)
        // Thick, and 2.5 times would still leave the densest tenth under 150 photons: 5 or 7.5
        // times (20 photons: 7.5; 40: 5), never more, and not beyond the ICD's 3 mA or what
        // would bring the brightest tenth to 55,000.
        let thicker = Self.choose(low: 20, high: 1000)
        #expect(thicker.mode == .thick && thicker.currentFactor == 7.5 && thicker.reason.contains("×7.50"))
        #expect(Self.choose(low: 40, high: 1000).currentFactor == 5)
        #expect(Self.choose(low: 0, high: 500).currentFactor == 7.5)
        #expect(Self.choose(low: 0, high: 500).current(standard: 100) == 750)
        let bright = Self.choose(low: 20, high: 15_000)
        #expect(bright.currentFactor == 2.5 && bright.reason.contains("brightest tenth would reach"))
        let icd = Self.choose(low: 20, high: 1000, currentUA: 500)
        #expect(icd.currentFactor == 5 && icd.current(standard: 500) == 2500 && icd.reason.contains("3 mA"))
        let capped = Self.choose(low: 20, high: 1000, currentUA: 2000)
        #expect(capped.currentFactor == 1.5 && capped.current(standard: 2000) == 3000)
        #expect(Self.choose(low: 2000, high: 60000).mode == .thin)
        // Starved and bright at once (thick would saturate, thin would starve): thin, said
        // (saturation loses numbers, fewer photons only add noise).
        let both = Self.choose(low: 100, high: 60000)
        #expect(both.mode == .thin && both.reason.contains("no mode keeps both"))
        // Thick would saturate the brightest tenth: not thick.
        #expect(Self.choose(low: 120, high: 30000).mode == .standard)
        // Thin leaves the densest tenth under 150 photons: thin all the same, said.
        let starved = Self.choose(low: 250, high: 60000)
        #expect(starved.mode == .thin && starved.reason.contains("no mode keeps both"))
        // The F test's 99 % point against the table: F(4, 59) = 3.655, F(4, 3) = 28.71.
        #expect(abs(Calibration.fQuantile99(4, 59) - 3.655) < 0.02)
        #expect(Calibration.fQuantile99(4, 3) > 28.7)
    }
}
