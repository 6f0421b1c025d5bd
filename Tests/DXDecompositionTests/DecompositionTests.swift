@testable import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// Scans made by the simulator's detector and physics, decomposed by the host's core, which
/// sees only the lines (never the simulator's tables or the scene's truth).
struct Scanner {
    var detector: Detector
    let geometry = ScanGeometry(channels: 144, pitchUm: 1000)

    init(seed: UInt64, physics: PhysicsModel = .kramers) { detector = Detector(channels: 144, pitchUm: 1000, seed: seed, physics: physics) }

    /// The second physics model's detector with `change` made to its parameters (the model's
    /// own defaults otherwise).
    static func cdte(seed: UInt64, _ change: (inout CdTeParameters) -> Void = { _ in }) -> Scanner {
        var p = CdTeParameters()
        change(&p)
        var s = Scanner(seed: seed)
        s.detector = Detector(channels: 144, pitchUm: 1000, seed: seed, model: .cdte,
                              physics: CdTeLinePhysics(channels: 144, pitchUm: 1000, seed: seed, parameters: p))
        return s
    }

    mutating func scan(_ scene: any Scene, mode: ScanMode = .dual, xUm: Int32 = 200_000, y0: Int32, y1: Int32, stepUm: Int32 = 1000,
                       periodUs: UInt32, currentUA: UInt32 = 1000) -> [ScanLine] {
        var lines: [ScanLine] = []
        var y = y0, i: UInt32 = 0
        while y < y1 {
            let r = detector.readLine(mode: mode, xUm: xUm, yUm: y, periodUs: periodUs, currentUA: currentUA, outputFactor: 1, scene: scene)
            var flags: LineFlags = mode == .dark ? [] : [.xrayOn]
            if r.saturated { flags.insert(.saturated) }
            lines.append(ScanLine(index: i, yUm: y, xUm: xUm, tUs: UInt64(i) * UInt64(periodUs), flags: flags, samples: r.samples))
            y += stepUm
            i += 1
        }
        return lines
    }

    /// Dark, air and calibration-phantom scans, fitted. `scatterPasses: false` leaves out the
    /// passes the scatter is measured from (no scatter correction), for comparison.
    /// `wholeWidths`: the cells' passes at whole cell widths, as every calibration capture
    /// made before 2026-12-06 has them (an archive's capture, fitted again with `coverage`).
    mutating func calibrate(scatterPasses: Bool = true, wholeWidths: Bool = false,
                            coverage: CalibrationMeasurement.Coverage = .refuseGaps, lowWindowMixing: Double? = nil) throws -> (AttenuationStage, Calibration) {
        let dark = try DarkReference(lines: scan(EmptyTable(), mode: .dark, y0: 1_900_000, y1: 1_950_000, periodUs: 10_000))
        let air = try AirReference(lines: scan(EmptyTable(), y0: 1_900_000, y1: 1_950_000, periodUs: 10_000), dark: dark,
                                   periodUs: 10_000, currentUA: 1000)
        let stage = AttenuationStage(dark: dark, air: air)
        // The daemon's procedure: thin cells at 50 ms·mA (the thinnest would saturate above
        // 57), thick ones at 1.2 s·mA, each at nine carriage positions; three at the air's
        // exposure for the scatter.
        let phantom = PhantomScene(StandardPhantoms.calibration)
        guard let procedure = CalibrationProcedure(phantom: StandardPhantoms.calibration, travelXUm: 400_000) else { throw DecompositionError.noLines("calibration") }
        func pass(_ p: ScanConfiguration) -> CalibrationFit.Pass {
            CalibrationFit.Pass(configuration: p, lines: scan(phantom, xUm: p.xUm, y0: p.yStartUm, y1: p.yStartUm + Int32(p.lineCount) * p.lineStepUm,
                                                            stepUm: p.lineStepUm, periodUs: p.linePeriodUs, currentUA: p.tubeCurrentUA))
        }
        var cellPasses = procedure.passes.filter { !CalibrationFit.isScatterPass($0) }
        if wholeWidths {
            // The old positions: centre + k·8 mm, k = −4 … 4 (the phantom spans 140–260 mm).
            let positions = CalibrationProcedure.offsets.map { Int32(200_000 + $0 * 8_000) }
            cellPasses = CalibrationProcedure.exposures.flatMap { exposure in
                positions.compactMap { x in
                    cellPasses.first { $0.linePeriodUs == exposure.0 && $0.tubeCurrentUA == exposure.1 }.map { var p = $0; p.xUm = x; return p }
                }
            }
        }
        var passes = cellPasses.map(pass)
        // The scatter passes and the second air scan at a quarter of the current (the dead
        // time) take their photon noise from a stream of their own, so that every other scan's
        // noise is what it was before they were added to the procedure.
        let main = detector
        detector.reseedNoise(0x5CA7_7E12)
        if scatterPasses { passes += procedure.passes.filter(CalibrationFit.isScatterPass).map(pass) }
        let lowRate = scan(EmptyTable(), y0: 1_900_000, y1: 2_000_000, periodUs: 10_000, currentUA: 250)
        detector = main
        let airs = [
            CountRate.AirMeasurement(total: zip(air.low, air.high).map { ($0 + $1) * 10_000 * 1000 }, periodUs: 10_000, currentUA: 1000),
            CountRate.AirMeasurement(lines: lowRate, dark: dark, periodUs: 10_000, currentUA: 250),
        ].compactMap { $0 }
        return (stage, try CalibrationFit.run(stage: stage, airs: airs, passes: passes, phantom: StandardPhantoms.calibration, geometry: geometry,
                                              source: "simulated calibration", coverage: coverage,
                                              lowWindowMixing: lowWindowMixing))
    }

    /// The standard exposure: 40 ms lines at 3 mA, 0.5 mm apart, 15 s for the phantom (a
    /// patient's AP spine takes 3 to 5 minutes, with more photons still). Air saturates and is
    /// flagged; tissue does not. `thick`: the thick-patient mode, 200 ms at 3 mA, 0.5 mm apart, for
    /// 25 g/cm² of tissue, where the standard exposure leaves under 100 photons per pixel in
    /// the low window (and where thinner tissue would saturate).
    mutating func measure(_ phantom: Phantom, stage: AttenuationStage, calibration: Calibration, thick: Bool = false) throws -> [String: Double] {
        let (period, current, step): (UInt32, UInt32, Int32) = thick ? (200_000, 3000, 500) : (40_000, 3000, 500)
        return try measure(phantom, stage: stage, calibration: calibration, periodUs: period, currentUA: current, stepUm: step)
    }

    /// A protocol's lines for the phantoms: their period and current in the standard mode, and
    /// their step.
    struct LineProtocol: Sendable {
        var periodUs: UInt32, currentUA: UInt32, stepUm: Int32
        /// The exam's AP spine (`ExamProtocol.standard`: 1 mm lines of 1 s at 0.4 mA, 400 ms·mA
        /// a pixel).
        static let examAPSpine = LineProtocol(periodUs: 1_000_000, currentUA: 400, stepUm: 1000)
        /// The tests' reduced exposure: 300 ms at 0.4 mA per 0.5 mm line (120 ms·mA a pixel, 0.3
        /// of the exam's; 0.6 of its photons per mm²), the matrix's protocol until 2026-12-07.
        static let reduced = LineProtocol(periodUs: 300_000, currentUA: 400, stepUm: 500)
    }

    /// The phantom scanned in the exposure mode the exam would choose: a scout of 12 lines
    /// first (`ExposureModeChooser`), then the scan at the chosen current, with `lines`' period
    /// and step (the exam's AP spine unless said otherwise).
    mutating func measureInChosenMode(_ phantom: Phantom, stage: AttenuationStage, calibration: Calibration,
                                      lines p: LineProtocol = .examAPSpine) throws -> ([String: Double], ExposureModeChooser.Choice) {
        let standard = ScanConfiguration(scanID: 1, mode: .dual, xUm: 200_000, yStartUm: 505_000, lineCount: UInt32(190_000 / p.stepUm), lineStepUm: p.stepUm,
                                         linePeriodUs: p.periodUs, tubeCurrentUA: p.currentUA, linesPerFrame: 4)
        let scout = ExposureModeChooser.scout(of: standard)
        let scoutLines = scan(PhantomScene(phantom), xUm: scout.xUm, y0: scout.yStartUm, y1: scout.yStartUm + Int32(scout.lineCount) * scout.lineStepUm,
                              stepUm: scout.lineStepUm, periodUs: scout.linePeriodUs, currentUA: scout.tubeCurrentUA)
        let choice = ExposureModeChooser().choose(scout: scoutLines, scoutPeriodUs: scout.linePeriodUs, scoutCurrentUA: scout.tubeCurrentUA,
                                                  dark: stage.dark, periodUs: standard.linePeriodUs, currentUA: standard.tubeCurrentUA, bmi: nil,
                                                  unmixing: calibration.unmixing, boneNoise: calibration.boneNoise)
        return (try measure(phantom, stage: stage, calibration: calibration, periodUs: standard.linePeriodUs,
                            currentUA: choice.current(standard: standard.tubeCurrentUA), stepUm: standard.lineStepUm), choice)
    }

    mutating func measure(_ phantom: Phantom, stage: AttenuationStage, calibration: Calibration,
                          periodUs period: UInt32, currentUA current: UInt32, stepUm step: Int32) throws -> [String: Double] {
        let lines = scan(PhantomScene(phantom), y0: 505_000, y1: 695_000, stepUm: step, periodUs: period, currentUA: current)
        let decomposer = Decomposer(calibration: calibration)
        var rois = (phantom.rois ?? []).map { ROIAccumulator(roi: $0, geometry: geometry) }
        let prepared = stage.prepared(periodUs: period, currentUA: current, calibration: calibration)
        // As the live pipeline and `dexa analyze` decompose: in order, with the scan's memory.
        var memory: TissueMemory? = TissueMemory(channels: geometry.channels)
        for l in lines {
            let d = decomposer.decompose(try prepared.process(l), memory: &memory)
            for k in rois.indices { rois[k].add(d) }
        }
        return Dictionary(uniqueKeysWithValues: rois.map { ($0.result.name, $0.result.bmdGcm2) })
    }
}

/// The ESP-like phantom with other soft tissue: `fat` may vary linearly across the field (left
/// to right, in 5 mm strips), under the vertebrae as beside them.
func spinePhantom(lean: Double, fatLeft: Double, fatRight: Double) -> Phantom {
    var cells: [Phantom.Cell] = []
    var rois: [Phantom.ROI] = []
    let strips = 24
    func fat(_ k: Int) -> Double { fatLeft + (fatRight - fatLeft) * Double(k) / Double(strips - 1) }
    for k in 0..<strips {
        let x0 = Int32(140_000 + k * 5_000)
        cells.append(Phantom.Cell(xUm: [x0, x0 + 5_000], yUm: [500_000, 700_000], hydroxyapatite: 0, lean: lean, fat: fat(k)))
    }
    for (i, ha) in [0.5, 1.0, 1.5].enumerated() {
        let y0 = Int32(520_000 + i * 60_000)
        // The vertebra spans 185–215 mm: strips 9 (its first 5 mm are 180–185) to 14.
        for k in 9...14 {
            let x0 = max(Int32(185_000), Int32(140_000 + k * 5_000)), x1 = min(Int32(215_000), Int32(145_000 + k * 5_000))
            cells.append(Phantom.Cell(xUm: [x0, x1], yUm: [y0, y0 + 40_000], hydroxyapatite: ha, lean: lean, fat: fat(k)))
        }
        rois.append(Phantom.ROI(name: "L\(i + 1)", xUm: [190_000, 210_000], yUm: [y0 + 5_000, y0 + 35_000]))
    }
    return Phantom(name: "spine lean \(lean) fat \(fatLeft)-\(fatRight)", cells: cells, rois: rois)
}

@Suite("Decomposition against the simulator's physics")
struct DecompositionTests {
    static let nominal = ["L1": 0.5, "L2": 1.0, "L3": 1.5]

    @Test func calibrationFitsTheICDRanges() throws {
        var s = Scanner(seed: 1)
        let (_, cal) = try s.calibrate()
        #expect(cal.points.count == 75)
        print(String(format: "calibration residuals: HA %.4f g/cm², soft %.3f g/cm², fat fraction %.4f",
                     cal.residualHydroxyapatite, cal.residualSoftTissue, cal.residualFatFraction))
        #expect(cal.residualHydroxyapatite < 0.01)
        #expect(cal.residualSoftTissue < 0.05)
        #expect(cal.source == "simulated calibration")
    }

    /// Accuracy: the mean of three scans per calibration (single scans scatter by the precision
    /// below, 0.2–0.4 % CV; this test is about bias), three calibrations.
    @Test(arguments: [2, 12, 22] as [UInt64])
    func espVerticesWithinOnePercent(seed: UInt64) throws {
        var s = Scanner(seed: seed)
        let (stage, cal) = try s.calibrate()
        var sums: [String: Double] = [:]
        for _ in 0..<3 {
            for (k, v) in try s.measure(StandardPhantoms.esp, stage: stage, calibration: cal) { sums[k, default: 0] += v / 3 }
        }
        for (name, expected) in Self.nominal.sorted(by: { $0.key < $1.key }) {
            let got = try #require(sums[name])
            let error = (got - expected) / expected
            print(String(format: "ESP seed %d %@: %.4f g/cm² (nominal %.1f, mean of 3, error %+.2f %%)", seed, name, got, expected, error * 100))
            #expect(abs(error) <= 0.01, "\(name): \(got) vs \(expected)")
        }
    }

    @Test func precisionOfTenRepeatedScans() throws {
        var s = Scanner(seed: 3)
        let (stage, cal) = try s.calibrate()
        var values: [String: [Double]] = [:]
        // The same detector (gains, offsets) scanning again: only the photon noise differs.
        for _ in 0..<10 {
            let bmd = try s.measure(StandardPhantoms.esp, stage: stage, calibration: cal)
            for (name, v) in bmd { values[name, default: []].append(v) }
        }
        for (name, v) in values.sorted(by: { $0.key < $1.key }) {
            let mean = v.reduce(0, +) / Double(v.count)
            let sd = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count - 1)).squareRoot()
            let cv = sd / mean
            print(String(format: "precision %@: mean %.4f, CV %.3f %%", name, mean, cv * 100))
            #expect(cv <= 0.005)
        }
    }

    /// Soft tissue of other composition and thickness, against the ESP phantom scanned with the
    /// same detector and the same noise sequence (a paired comparison: what changes is the
    /// tissue, not the photon noise).
    @Test func softTissueCompositionAndThicknessBarelyMatter() throws {
        var s = Scanner(seed: 4)
        let (stage, cal) = try s.calibrate()
        let cases: [(String, Phantom)] = [
            ("fat 0→6 across", spinePhantom(lean: 15, fatLeft: 0, fatRight: 6)),
            ("fat 6→0 across", spinePhantom(lean: 15, fatLeft: 6, fatRight: 0)),
            ("fat 0", spinePhantom(lean: 15, fatLeft: 0, fatRight: 0)),
            ("fat 6", spinePhantom(lean: 15, fatLeft: 6, fatRight: 6)),
            ("lean 10", spinePhantom(lean: 10, fatLeft: 3, fatRight: 3)),
        ]
        var reference = s
        let esp = try reference.measure(StandardPhantoms.esp, stage: stage, calibration: cal)
        // The issue's target is 1 % of nominal. L1 (0.5 g/cm²) under 6 g/cm² of fat reads
        // 1.0–1.05 % low: the tissue beside it reads about −0.005 g/cm² of bone there, the
        // calibration's fat model off the phantom's own tissue; held within 2 %, with the 1 %
        // target a known issue of its own. Under fat across the field L1 read 1.0–1.6 % low
        // until 2026-12-07, when the reference under bone followed the tissue across the field
        // rather than its ratio's straight line (−0.54 / −0.60 % since; docs/physics.md, "The
        // references at their places").
        let fatMisfit: Set<String> = ["fat 6"]
        for (label, phantom) in cases {
            var paired = s
            let bmd = try paired.measure(phantom, stage: stage, calibration: cal)
            for (name, expected) in Self.nominal.sorted(by: { $0.key < $1.key }) {
                let got = try #require(bmd[name]), base = try #require(esp[name])
                let change = (got - base) / expected, error = (got - expected) / expected
                print(String(format: "%@ %@: %.4f (change from ESP %+.2f %%, error %+.2f %%)", label, name, got, change * 100, error * 100))
                #expect(abs(change) <= 0.01, "\(label) \(name): \(got) vs \(base) on the ESP phantom")
                if name == "L1" && fatMisfit.contains(label) {
                    #expect(abs(error) <= 0.02, "\(label) \(name): \(got) vs \(expected)")
                    // Fat 6 stands at the target's edge (−1.02 to −1.04 %).
                    withKnownIssue("\(label) L1 over 1 % low: the calibration's fat model (docs/physics.md)", isIntermittent: label == "fat 6") {
                        #expect(abs(error) <= 0.01, "\(label) \(name): \(got) vs \(expected)")
                    }
                } else {
                    #expect(abs(error) <= 0.01, "\(label) \(name): \(got) vs \(expected)")
                }
            }
        }
        // 25 g/cm² of lean: the thick-patient exposure (another noise sequence, so the mean of
        // three scans stands for the systematic error).
        var thick: [String: [Double]] = [:]
        for _ in 0..<3 {
            for (k, v) in try s.measure(spinePhantom(lean: 25, fatLeft: 3, fatRight: 3), stage: stage, calibration: cal, thick: true) {
                thick[k, default: []].append(v)
            }
        }
        for (name, expected) in Self.nominal.sorted(by: { $0.key < $1.key }) {
            let v = try #require(thick[name])
            let mean = v.reduce(0, +) / Double(v.count)
            let error = (mean - expected) / expected
            print(String(format: "lean 25 %@: %.4f (mean of 3, error %+.2f %%; scans %@)", name, mean, error * 100,
                         v.map { String(format: "%.4f", $0) }.joined(separator: " ")))
            #expect(abs(error) <= 0.01, "lean 25 \(name): \(mean) vs \(expected)")
        }
    }

    /// A calibration capture from before 2026-12-06 (the cells' passes at whole widths, 54 of
    /// 144 channels never under a cell's interior): `service.calibrate` would refuse it now, but
    /// an archive's capture is fitted again (`dexa analyze`, re-analysis) with those channels'
    /// response taken from their neighbours and listed, so that its scans stay analysable; on
    /// the first model (its channels alike) the ESP reads as before, within 1.5 %.
    @Test func anArchivedCalibrationCaptureStillFits() throws {
        var s = Scanner(seed: 31)
        #expect(throws: DecompositionError.self) { try s.calibrate(wholeWidths: true, coverage: .refuseGaps) }
        var t = Scanner(seed: 31)
        let (stage, cal) = try t.calibrate(wholeWidths: true, coverage: .inferGaps)
        let inferred = cal.inferredChannels ?? []
        print("archived calibration: \(inferred.count) channels inferred; \(cal.verdict); the spectra's continuation set aside at \(String(describing: cal.extensionSetAside))")
        #expect(inferred.count >= 50 && inferred.count <= 58, "\(inferred)")
        #expect(cal.verdict.accepted, "\(cal.verdict)")
        // Its cells' inferred channels are what the spectra do not describe: the models continued
        // by them would fail the rule (0.0128 g/cm² against 0.0068), the cells' alone pass, and
        // the calibration says which it holds (docs/physics.md, "The phantom's cells as spectra").
        #expect(cal.spectra != nil && (cal.extensionSetAside ?? 0) > cal.verdict.limit, "\(String(describing: cal.extensionSetAside))")
        let bmd = try t.measure(StandardPhantoms.esp, stage: stage, calibration: cal)
        for (name, expected) in Self.nominal.sorted(by: { $0.key < $1.key }) {
            let got = try #require(bmd[name])
            print(String(format: "archived calibration, ESP %@: %.4f (%+.2f %%)", name, got, (got - expected) / expected * 100))
            #expect(abs(got - expected) / expected <= 0.015)
        }
    }

    @Test func badReferencesAndCalibrationsAreClearErrors() throws {
        var s = Scanner(seed: 5)
        // A dark reference from saturated lines.
        let saturated = ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [], samples: [UInt16](repeating: 65535, count: 288))
        #expect(throws: DecompositionError.self) { try DarkReference(lines: [saturated]) }
        #expect(throws: DecompositionError.noLines("reference")) { try DarkReference(lines: []) }
        // An air scan with the tube off: no brighter than dark.
        let dark = try DarkReference(lines: s.scan(EmptyTable(), mode: .dark, y0: 0, y1: 20_000, periodUs: 10_000))
        let noBeam = s.scan(EmptyTable(), mode: .dark, y0: 0, y1: 20_000, periodUs: 10_000)
        #expect(throws: DecompositionError.self) { try AirReference(lines: noBeam, dark: dark, periodUs: 10_000, currentUA: 1000) }
        // A calibration from a phantom missing its high-bone cells.
        var partial = StandardPhantoms.calibration
        partial.cells = partial.cells?.filter { $0.hydroxyapatite < 1.9 }
        let air = try AirReference(lines: s.scan(EmptyTable(), y0: 0, y1: 20_000, periodUs: 10_000), dark: dark, periodUs: 10_000, currentUA: 1000)
        let stage = AttenuationStage(dark: dark, air: air)
        // At one carriage position the cells' interiors miss channels between those they
        // reach: refused, the channels named; at the procedure's positions every channel is
        // measured.
        let one = try s.scan(PhantomScene(partial), y0: 295_000, y1: 355_000, stepUm: 1000, periodUs: 40_000)
            .map { try stage.process($0, periodUs: 40_000, currentUA: 1000) }
        do {
            _ = try CalibrationMeasurement.points(lines: one, geometry: s.geometry, phantom: partial)
            Issue.record("one carriage position's calibration was measured")
        } catch {
            #expect(error.description.contains("saw no cell's interior"), "\(error)")
        }
        let positions = Set((CalibrationProcedure(phantom: StandardPhantoms.calibration, travelXUm: 400_000)?.passes ?? [])
            .filter { !CalibrationFit.isScatterPass($0) }.map(\.xUm)).sorted()
        #expect(positions.count == 9)
        func everywhere(_ scene: any Scene, y1: Int32) throws -> [AttenuationLine] {
            try positions.flatMap { x in
                try s.scan(scene, xUm: x, y0: 295_000, y1: y1, stepUm: 1000, periodUs: 40_000).map { try stage.process($0, periodUs: 40_000, currentUA: 1000) }
            }
        }
        // (The phantom without them leaves channels unseen where its cells are missing, which
        // is refused as above: the fit's own check is shown on the whole phantom's points less
        // the high-bone cells.)
        let lines = try everywhere(PhantomScene(StandardPhantoms.calibration), y1: 355_000)
        let points = try CalibrationMeasurement.points(lines: lines, geometry: s.geometry, phantom: StandardPhantoms.calibration)
            .filter { $0.hydroxyapatite < 1.9 }
        #expect(throws: DecompositionError.calibrationRangeMissing("hydroxyapatite 0 to 2.0 g/cm²")) {
            try Calibration.fit(points: points, source: "partial")
        }
        // A calibration scan that stopped half-way: the thick rows of cells were never scanned.
        let halfScan = try everywhere(PhantomScene(StandardPhantoms.calibration), y1: 322_000)
        let halfPoints = try CalibrationMeasurement.points(lines: halfScan, geometry: s.geometry, phantom: StandardPhantoms.calibration)
        #expect(halfPoints.count < 75)
        #expect(throws: DecompositionError.self) { try Calibration.fit(points: halfPoints, source: "half") }
        // No lines at all over the phantom: no points, and a fit says how many it needs.
        #expect(try CalibrationMeasurement.points(lines: [], geometry: s.geometry, phantom: StandardPhantoms.calibration).isEmpty)
        #expect(throws: DecompositionError.tooFewCalibrationPoints(0, needed: 20)) { try Calibration.fit(points: [], source: "none") }
        // Saturated and dark-level pixels are flagged, never turned into numbers.
        let hot = ScanLine(index: 0, yUm: 0, xUm: 200_000, tUs: 0, flags: [.xrayOn],
                           samples: (0..<288).map { $0 < 2 ? 65535 : ($0 < 4 ? 0 : 20_000) })
        let a = try stage.process(hot, periodUs: 10_000, currentUA: 1000)
        #expect(a.flags[0].contains(.saturated) && a.low[0].isNaN)
        #expect(a.flags[1].contains(.belowDark) && a.low[1].isNaN)
        #expect(a.flags[2].isEmpty && a.low[2].isFinite)
        // Exactly the dark level (zero after subtraction, log undefined): flagged, and the
        // decomposed line carries NaN there, never a number.
        var atDark = hot.samples
        for c in 10..<20 { atDark[2 * c] = UInt16(dark.means.low[c].rounded()); atDark[2 * c + 1] = UInt16(dark.means.high[c].rounded()) }
        let zero = try stage.process(ScanLine(index: 1, yUm: 0, xUm: 200_000, tUs: 0, flags: [.xrayOn], samples: atDark), periodUs: 10_000, currentUA: 1000)
        let (_, cal) = try s.calibrate()
        let decomposed = Decomposer(calibration: cal).decompose(zero)
        for c in 10..<20 {
            #expect(zero.flags[c].contains(.belowDark))
            #expect(decomposed.bone[c].isNaN && decomposed.soft[c].isNaN)
        }
        #expect(decomposed.bone[2].isFinite)
        #expect(throws: DecompositionError.self) {
            try stage.process(ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [.xrayOn], samples: [1, 2]), periodUs: 10_000, currentUA: 1000)
        }
    }
}

@Suite("Decomposition hot path")
struct HotPathTests {
    /// The unrolled polynomials of the hot path are the fitted models, term for term.
    @Test func fastModelEqualsTheFittedModels() throws {
        var s = Scanner(seed: 8)
        let (_, cal) = try s.calibrate()
        let fast = cal.fastBoneModel
        var rng = SplitMix64(seed: 1)
        for _ in 0..<1000 {
            let v = 0.5 + 6 * Double(rng.next() % 10_000) / 10_000
            let r = 1.4 + 0.25 * Double(rng.next() % 10_000) / 10_000
            let u = v * r + 1.0 * Double(rng.next() % 10_000) / 10_000
            let bone = cal.hydroxyapatite.evaluate(Calibration.boneTerms(u, v, r))
            let soft = cal.softTissue.evaluate(Calibration.softTerms(u, v, r))
            #expect(abs(fast.bone(u, v, r) - bone) <= 1e-9 * max(1, abs(bone)))
            #expect(abs(fast.soft(u, v, r) - soft) <= 1e-9 * max(1, abs(soft)))
            #expect(abs(fast.fatFraction(u, v) - cal.fatFraction(lLow: u, lHigh: v)) <= 1e-9)
        }
        #expect(cal.isWellFormed)
        var broken = cal
        broken.hydroxyapatite.coefficients.removeLast()
        #expect(!broken.isWellFormed)
        #expect(broken.fastBoneModel.bone(5, 3, 1.5).isNaN, "a malformed model gives NaN, not a number")
    }

    @Test func fastLogMatchesTheLibrary() {
        var worst = 0.0
        var x = 0.5
        while x < 70_000 {
            worst = max(worst, abs(FastLog.ln(x) - Foundation.log(x)) / max(1e-300, abs(Foundation.log(x))))
            x *= 1.000_37
        }
        #expect(worst < 1e-13, "worst relative error \(worst)")
        #expect(FastLog.ln(1) == 0)
    }
}
