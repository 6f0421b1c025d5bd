import DXProtocol
import Foundation

/// The calibration's arithmetic, one path for `service.calibrate`, `dexa analyze` and the
/// tests' scanners: the detector's dead time from the air scans at two currents
/// (`CountRate`), the scatter in the fan from the passes where air beside the phantom is
/// measured (`ScatterModel`), then every pass with both undone, the cells measured and the
/// bone model fitted (`CalibrationMeasurement`, `Calibration.fit`).
public enum CalibrationFit {
    /// One calibration pass: how it was configured and its lines.
    public struct Pass: Sendable {
        public var configuration: ScanConfiguration
        public var lines: [ScanLine]
        public init(configuration: ScanConfiguration, lines: [ScanLine]) { self.configuration = configuration; self.lines = lines }
    }

    public static func run(stage: AttenuationStage, airs: [CountRate.AirMeasurement], passes: [Pass], phantom: Phantom,
                           geometry: ScanGeometry, source: String, unit: CalibratedUnit? = nil,
                           coverage: CalibrationMeasurement.Coverage = .refuseGaps,
                           lowWindowMixing: Double? = nil) throws(DecompositionError) -> Calibration {
        let deadTimeUs = CountRate.deadTimeUs(airs)
        let bare = passes.map { stage.prepared(periodUs: $0.configuration.linePeriodUs, currentUA: $0.configuration.tubeCurrentUA, deadTimeUs: deadTimeUs ?? 0) }
        let indexed = passes.enumerated().flatMap { i, p in p.lines.map { (line: $0, pass: i) } }
        // The thickness the scatter sees, from the cells as measured before any scatter is
        // taken off (`ScatterThickness`); only when there are scatter passes to measure it.
        var thickness = ScatterThickness.highWindow
        // The cells' lines are made as the measurement reads them, twice, never all held (a
        // calibration's attenuation lines are 17 bytes a pixel: issue 18).
        let cellPasses = passes.indices.filter { !isScatterPass(passes[$0].configuration) }
        let anyCellLine = cellPasses.contains { !passes[$0].lines.isEmpty }
        if passes.contains(where: { isScatterPass($0.configuration) }), anyCellLine {
            let raw = try CalibrationMeasurement.solve(CalibrationMeasurement.gather(each: { body throws(DecompositionError) in
                for i in cellPasses { for line in passes[i].lines { body(try bare[i].process(line)) } }
            }, geometry: geometry, phantom: phantom), lowWindowMixing: 0, coverage: coverage, crossTerms: false)
            if let fitted = ScatterThickness.fit(raw.points) { thickness = fitted }
        }
        // The width is the air's choice. Choosing it by the cells' own bone residual was tried
        // (2026-12-05) and not kept: where the residual barely depends on the width it picked
        // 17.5 mm for a 25 mm kernel and moved the ESP by up to −0.9 %, and on the full second
        // model it accepted a calibration reading L1 −1.9 % (docs/physics.md).
        let scatter = ScatterModel.measure(lines: indexed, trueCounts: { line, pass in bare[pass].trueCounts(line) },
                                           geometry: geometry, phantom: phantom, thickness: thickness)
        // The cells from the passes made for them; the scatter passes (at the air reference's
        // exposure) measure the scatter only, so the cells are measured as they always were.
        let prepared = passes.map {
            stage.prepared(periodUs: $0.configuration.linePeriodUs, currentUA: $0.configuration.tubeCurrentUA,
                           deadTimeUs: deadTimeUs ?? 0, scatter: scatter)
        }
        // A pass long enough for the thick cells saturates beside them, where the thin cells
        // send the most scatter: a saturated channel's source comes from the same place in the
        // pass of least exposure that counted it (`ScatterSources.filled`).
        struct Place: Hashable { var xUm: Int32, yUm: Int32 }
        var byPlace: [Place: [ScatterSources]] = [:]
        if scatter != nil {
            for (i, p) in passes.enumerated() {
                for line in p.lines {
                    if let s = prepared[i].scatterSources(line) { byPlace[Place(xUm: line.xUm, yUm: line.yUm), default: []].append(s) }
                }
            }
            for key in byPlace.keys { byPlace[key]?.sort { $0.exposure < $1.exposure } }
        }
        guard anyCellLine else { throw .noLines("calibration: every pass was a scatter pass") }
        let gathered = try CalibrationMeasurement.gather(each: { body throws(DecompositionError) in
            for i in cellPasses {
                for line in passes[i].lines {
                    var sources = prepared[i].scatterSources(line)
                    if var own = sources, own.measured.contains(false) {
                        for other in (byPlace[Place(xUm: line.xUm, yUm: line.yUm)] ?? []).reversed() where other.exposure < own.exposure {
                            own = own.filled(from: other)
                        }
                        sources = own
                    }
                    body(try prepared[i].process(line, scatterSources: sources))
                }
            }
        }, geometry: geometry, phantom: phantom)
        // The low window's high-energy photons, where the cells show them (`LowWindowMixing`),
        // or as the caller knows them (a comparison of two detectors at the same unmixing).
        let measurement: CalibrationMeasurement.Result
        if let f = lowWindowMixing {
            measurement = try CalibrationMeasurement.solve(gathered, lowWindowMixing: f, coverage: coverage)
        } else {
            measurement = try LowWindowMixing.measure(gathered, coverage: coverage)
        }
        var calibration = try Calibration.fit(measurement, source: source, unit: unit, deadTimeUs: deadTimeUs)
        calibration.scatter = scatter
        if calibration.lowWindowMixing != nil {
            // Over the central half of the fan, the channels the scout judges (the heel effect
            // moves the ratio across the fan).
            let air = stage.air.corrected(deadTimeUs: deadTimeUs ?? 0)
            let n = min(air.low.count, air.high.count), central = (n / 4)..<(n - n / 4)
            let ratios = central.compactMap { c in air.high[c] > 0 && air.low[c] > 0 ? air.low[c] / air.high[c] : nil }.sorted()
            calibration.lowWindowAirRatio = ratios.isEmpty ? nil : ratios[ratios.count / 2]
        }
        return calibration
    }

    /// A pass at `CalibrationProcedure.scatterExposure`.
    public static func isScatterPass(_ c: ScanConfiguration) -> Bool {
        (c.linePeriodUs, c.tubeCurrentUA) == CalibrationProcedure.scatterExposure
    }
}
