import DXDecomposition
import DXProtocol
import Foundation
import Testing
@testable import DXSimulator

/// Scans made by the simulator's detector and physics, decomposed by the host's core, which
/// sees only the lines (never the simulator's tables or the scene's truth).
struct Scanner {
    var detector: Detector
    let geometry = ScanGeometry(channels: 144, pitchUm: 1000)

    init(seed: UInt64) { detector = Detector(channels: 144, pitchUm: 1000, seed: seed) }

    mutating func scan(_ scene: any Scene, mode: ScanMode = .dual, y0: Int32, y1: Int32, stepUm: Int32 = 1000,
                       periodUs: UInt32, currentUA: UInt32 = 1000) -> [ScanLine] {
        var lines: [ScanLine] = []
        var y = y0, i: UInt32 = 0
        while y < y1 {
            let r = detector.readLine(mode: mode, xUm: 200_000, yUm: y, periodUs: periodUs, currentUA: currentUA, outputFactor: 1, scene: scene)
            var flags: LineFlags = mode == .dark ? [] : [.xrayOn]
            if r.saturated { flags.insert(.saturated) }
            lines.append(ScanLine(index: i, yUm: y, xUm: 200_000, tUs: UInt64(i) * UInt64(periodUs), flags: flags, samples: r.samples))
            y += stepUm
            i += 1
        }
        return lines
    }

    /// Dark, air and calibration-phantom scans, fitted.
    mutating func calibrate() throws -> (AttenuationStage, Calibration) {
        let dark = try DarkReference(lines: scan(EmptyTable(), mode: .dark, y0: 1_900_000, y1: 1_950_000, periodUs: 10_000))
        let air = try AirReference(lines: scan(EmptyTable(), y0: 1_900_000, y1: 1_950_000, periodUs: 10_000), dark: dark,
                                   periodUs: 10_000, currentUA: 1000)
        let stage = AttenuationStage(dark: dark, air: air)
        let calLines = scan(PhantomScene(StandardPhantoms.calibration), y0: 295_000, y1: 355_000, stepUm: 100, periodUs: 50_000)
        let att = try calLines.map { try stage.process($0, periodUs: 50_000, currentUA: 1000) }
        let points = try CalibrationMeasurement.points(lines: att, geometry: geometry, phantom: StandardPhantoms.calibration)
        return (stage, try Calibration.fit(points: points, source: "simulated calibration"))
    }

    mutating func measure(_ phantom: Phantom, stage: AttenuationStage, calibration: Calibration) throws -> [String: Double] {
        // 40 ms lines at 2 mA: air saturates (flagged), tissue does not.
        let lines = scan(PhantomScene(phantom), y0: 505_000, y1: 695_000, periodUs: 40_000, currentUA: 2000)
        let decomposer = Decomposer(calibration: calibration)
        var rois = (phantom.rois ?? []).map { ROIAccumulator(roi: $0, geometry: geometry) }
        for l in lines {
            let d = decomposer.decompose(try stage.process(l, periodUs: 40_000, currentUA: 2000))
            for k in rois.indices { rois[k].add(d) }
        }
        return Dictionary(uniqueKeysWithValues: rois.map { ($0.result.name, $0.result.bmdGcm2) })
    }
}

/// The ESP-like phantom with other soft tissue: `fat` may vary across the field (left to right).
func spinePhantom(lean: Double, fatLeft: Double, fatRight: Double) -> Phantom {
    var cells: [Phantom.Cell] = []
    // The soft-tissue block in 12 strips of 10 mm, fat varying linearly across them.
    for k in 0..<12 {
        let x0 = Int32(140_000 + k * 10_000)
        let fat = fatLeft + (fatRight - fatLeft) * Double(k) / 11
        cells.append(Phantom.Cell(xUm: [x0, x0 + 10_000], yUm: [500_000, 700_000], hydroxyapatite: 0, lean: lean, fat: fat))
    }
    var rois: [Phantom.ROI] = []
    let fatMid = (fatLeft + fatRight) / 2
    for (i, ha) in [0.5, 1.0, 1.5].enumerated() {
        let y0 = Int32(520_000 + i * 60_000)
        cells.append(Phantom.Cell(xUm: [185_000, 215_000], yUm: [y0, y0 + 40_000], hydroxyapatite: ha, lean: lean, fat: fatMid))
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
        #expect(cal.residualHydroxyapatite < 0.05)
        withKnownIssue("issue 4: photon-starved thick cells still leave 0.02 g/cm² of fit residual", isIntermittent: true) {
            #expect(cal.residualHydroxyapatite < 0.01)
        }
        #expect(cal.source == "simulated calibration")
    }

    @Test func espVerticesWithinOnePercent() throws {
        var s = Scanner(seed: 2)
        let (stage, cal) = try s.calibrate()
        let bmd = try s.measure(StandardPhantoms.esp, stage: stage, calibration: cal)
        for (name, expected) in Self.nominal {
            let got = try #require(bmd[name])
            let error = (got - expected) / expected
            print(String(format: "ESP %@: %.4f g/cm² (nominal %.1f, error %+.2f %%)", name, got, expected, error * 100))
            // Achieved now: within 4 %. Issue 4's target is 1 % (0.5 g/cm² is the hardest).
            #expect(abs(error) <= 0.04, "\(name): \(got) vs \(expected)")
            withKnownIssue("issue 4 target: each vertebra within 1 %", isIntermittent: true) {
                #expect(abs(error) <= 0.01, "\(name): \(got) vs \(expected)")
            }
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
            #expect(cv <= 0.01)
            withKnownIssue("issue 4 target: CV at most 0.5 %", isIntermittent: true) { #expect(cv <= 0.005) }
        }
    }

    @Test func softTissueCompositionAndThicknessBarelyMatter() throws {
        var s = Scanner(seed: 4)
        let (stage, cal) = try s.calibrate()
        let cases: [(String, Phantom)] = [
            ("fat 0→6 across", spinePhantom(lean: 15, fatLeft: 0, fatRight: 6)),
            ("fat 6→0 across", spinePhantom(lean: 15, fatLeft: 6, fatRight: 0)),
            ("lean 10", spinePhantom(lean: 10, fatLeft: 3, fatRight: 3)),
        ]
        for (label, phantom) in cases {
            let bmd = try s.measure(phantom, stage: stage, calibration: cal)
            for (name, expected) in Self.nominal {
                let got = try #require(bmd[name])
                let error = (got - expected) / expected
                print(String(format: "%@ %@: %.4f (error %+.2f %%)", label, name, got, error * 100))
                #expect(abs(error) <= 0.02, "\(label) \(name): \(got) vs \(expected)")
                withKnownIssue("issue 4 target: within 1 %", isIntermittent: true) {
                    #expect(abs(error) <= 0.01, "\(label) \(name): \(got) vs \(expected)")
                }
            }
        }
        // 25 g/cm² of lean: the low window is photon-starved, the bone/soft classification
        // fails on the thinnest vertebra. Not solved yet (issue 4).
        let thick = try s.measure(spinePhantom(lean: 25, fatLeft: 3, fatRight: 3), stage: stage, calibration: cal)
        for (name, expected) in Self.nominal {
            let error = ((thick[name] ?? .nan) - expected) / expected
            print(String(format: "lean 25 %@: %.4f (error %+.2f %%)", name, thick[name] ?? .nan, error * 100))
            withKnownIssue("issue 4: thick soft tissue (25 g/cm²) not yet within 1 %", isIntermittent: true) {
                #expect(abs(error) <= 0.01)
            }
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
        let lines = try s.scan(PhantomScene(partial), y0: 295_000, y1: 355_000, stepUm: 1000, periodUs: 40_000)
            .map { try stage.process($0, periodUs: 40_000, currentUA: 1000) }
        let points = try CalibrationMeasurement.points(lines: lines, geometry: s.geometry, phantom: partial)
        #expect(throws: DecompositionError.calibrationRangeMissing("hydroxyapatite 0 to 2.0 g/cm²")) {
            try Calibration.fit(points: points, source: "partial")
        }
        // Saturated and dark-level pixels are flagged, never turned into numbers.
        let hot = ScanLine(index: 0, yUm: 0, xUm: 200_000, tUs: 0, flags: [.xrayOn],
                           samples: (0..<288).map { $0 < 2 ? 65535 : ($0 < 4 ? 0 : 20_000) })
        let a = try stage.process(hot, periodUs: 10_000, currentUA: 1000)
        #expect(a.flags[0].contains(.saturated) && a.low[0].isNaN)
        #expect(a.flags[1].contains(.belowDark) && a.low[1].isNaN)
        #expect(a.flags[2].isEmpty && a.low[2].isFinite)
        #expect(throws: DecompositionError.self) {
            try stage.process(ScanLine(index: 0, yUm: 0, xUm: 0, tUs: 0, flags: [.xrayOn], samples: [1, 2]), periodUs: 10_000, currentUA: 1000)
        }
    }
}
