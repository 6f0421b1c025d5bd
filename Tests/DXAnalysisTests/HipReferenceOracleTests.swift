@testable import DXAnalysis
import DXDecomposition
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// A scene with its bone taken away: the soft tissue alone, as it lies under the bone too.
struct WithoutBone: Scene {
    let base: any Scene
    func composition(xUm: Int32, yUm: Int32) -> Composition {
        var c = base.composition(xUm: xUm, yUm: yUm)
        c.hydroxyapatite = 0
        return c
    }
}

/// The femoral neck read two ways over the analysis's own neck pixels: as the product reads it,
/// and against the true ratio of the soft tissue at each pixel (the same scene without its
/// bone, scanned six times more with other noise and averaged), each held against the femur's
/// truth over the same pixels. What separates the two is the decomposer's soft-tissue
/// reference; what the second leaves is the bone model's own. Twelve patients in the suite
/// (`DEXA_HIP_ORACLE_PATIENTS=30` as in docs/physics.md; `DEXA_SOFT_TISSUE` as the hip study;
/// `DEXA_HIP_ORACLE_SEEDS=74,18` prints each neck row): docs/physics.md, "The neck against the
/// tissue's true ratio".
@Suite("The neck against the tissue's true ratio")
struct HipReferenceOracleTests {
    static let environment = ProcessInfo.processInfo.environment

    @Test func theNeckAgainstTheTissuesTrueRatio() throws {
        let patients = Int(Self.environment["DEXA_HIP_ORACLE_PATIENTS"] ?? "") ?? 12
        let soft = Self.environment["DEXA_SOFT_TISSUE"].flatMap(Double.init)
        let rowsOf = Self.environment["DEXA_HIP_ORACLE_SEEDS"].map { $0.split(separator: ",").compactMap { UInt64($0) } }
        var scanner = TableScanner(seed: 2026)
        try scanner.calibrate()
        let stage = try #require(scanner.stage), cal = try #require(scanner.calibration)
        let fast = cal.fastBoneModel
        var product: [Double] = [], truthRatio: [Double] = []
        for seed in rowsOf ?? Array(UInt64(1)...UInt64(patients)) {
            var spec = PatientVariety.patient(seed: seed)
            if let soft { spec.softTissue = soft }
            let side: ProximalFemur.Side = seed % 2 == 1 ? .left : .right
            guard let hip = spec.hips.first(where: { $0.side == side }) else { continue }
            let scene = PatientScene(spec)
            scanner.detector.reseedNoise(100 + seed)
            let (config, _) = try scanner.exposure(for: scene, hipScan(side))
            scanner.detector.reseedNoise(100 + seed)
            let lines = scanner.lines(scene, config)
            var work = ScanDecomposition(stage: stage, calibration: cal, geometry: scanner.geometry, rois: [], configuration: config)
            for l in lines { try work.add(l) }
            var scan = work.decomposed
            scan.provenance.region = side == .left ? "left_hip" : "right_hip"
            guard let m = try? HipAnalysis.measure(scan), let neck = m.pixels["neck"], let truth = femurTruth(spec, hip, m, scan, roi: "neck") else {
                print("hip oracle seed \(seed): no neck")
                continue
            }
            let prepared = stage.prepared(periodUs: config.linePeriodUs, currentUA: config.tubeCurrentUA, calibration: cal)
            let attenuations = try lines.map { try prepared.process($0) }
            let channels = scanner.geometry.channels, count = lines.count, repeats = 6
            var low = [Double](repeating: 0, count: channels * count), high = low
            for k in 0..<repeats {
                scanner.detector.reseedNoise(50_000 + seed * 10 + UInt64(k))
                for (r, a) in try scanner.lines(WithoutBone(base: scene), config).map({ try prepared.process($0) }).enumerated() {
                    for c in 0..<channels { low[r * channels + c] += a.low[c] / Double(repeats); high[r * channels + c] += a.high[c] / Double(repeats) }
                }
            }
            let map = BoneMap(scan)
            var sum = 0.0, sumTrue = 0.0, pixels = 0.0
            var rows: [Int: (difference: Double, n: Int)] = [:]
            for i in neck {
                let row = i / channels, c = i % channels
                let r = scan.geometry.lineStepMM < 0 ? count - 1 - row : row
                let a = attenuations[r]
                let b = fast.unbiasedBone(a.low[c], a.high[c], low[r * channels + c] / high[r * channels + c],
                                          varU: a.varianceLow[c], varV: a.varianceHigh[c], covUV: a.covariance(at: c))
                guard b.isFinite, map.bone[i].isFinite else { continue }
                sum += Double(map.bone[i]); sumTrue += b; pixels += 1
                let p = rows[row] ?? (0, 0)
                rows[row] = (p.difference + Double(map.bone[i]) - b, p.n + 1)
            }
            guard pixels > 0 else { continue }
            product.append(sum / pixels / truth.bmd - 1)
            truthRatio.append(sumTrue / pixels / truth.bmd - 1)
            print(String(format: "hip oracle seed %llu: neck %+.2f %%, against the true ratio %+.2f %%", seed, (product.last ?? 0) * 100, (truthRatio.last ?? 0) * 100))
            if rowsOf != nil {
                for (row, p) in rows.sorted(by: { $0.key < $1.key }) {
                    print(String(format: "  row %d (y %.0f mm): product less true ratio %+.4f g/cm² over %d pixels", row, map.y(row), p.difference / Double(p.n), p.n))
                }
            }
        }
        let parts = zip(product, truthRatio).map { $0 - $1 }
        func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(max(1, x.count)) }
        func sd(_ x: [Double]) -> Double { let m = mean(x); return (x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(max(1, x.count - 1))).squareRoot() }
        print(String(format: "hip oracle: %d necks; as read %+.2f %% (SD %.2f); against the true ratio %+.2f %%; the reference's part %+.2f, SD %.2f, worst %+.2f points",
                     product.count, mean(product) * 100, sd(product) * 100, mean(truthRatio) * 100, mean(parts) * 100, sd(parts) * 100,
                     (parts.max { abs($0) < abs($1) } ?? 0) * 100))
        #expect(!product.isEmpty)
        // Normal patients: the reference's part scattered 0.90 points over hips (seeds 1–30;
        // 0.75 over seeds 1–12) before the memory was averaged (2026-12-07), 0.39 (0.35) since.
        if soft == nil && rowsOf == nil && patients >= 12 { #expect(sd(parts) < 0.006, "the reference's part scatters \(sd(parts) * 100) points") }
    }
}
