import CCairo
import DXClinical
import Foundation

/// The phantom QC charts (docs/qc.md): per region, the Shewhart chart (each result's % from
/// the baseline mean, the ±limit band, the verdicts) beside the CUSUM chart (C⁺ up, C⁻ down,
/// the decision interval h), on one landscape A4 page, PDF or PNG.
public enum QCChart {
    /// What the chart shows: the unit, its state in words, every result's reading (oldest
    /// first, the baseline's included), the baseline and the rules.
    public struct Input: Sendable {
        public var device: String
        public var state: String
        public var points: [QualityControl.Point]
        public var baseline: QualityControl.Baseline?
        public var rules: QualityControl.Rules
        /// What the history starts from (a reset), in words.
        public var since: String?

        public init(device: String, state: String, points: [QualityControl.Point], baseline: QualityControl.Baseline?,
                    rules: QualityControl.Rules, since: String?) {
            self.device = device; self.state = state; self.points = points; self.baseline = baseline; self.rules = rules; self.since = since
        }
    }

    static let width = 842.0, height = 595.0, margin = 36.0

    public static func pdf(_ input: Input, to path: String, generated: Date = Date()) throws(ReportWriter.Failure) {
        guard let surface = cairo_pdf_surface_create(path, width, height) else { throw .init(description: "cannot create \(path)") }
        defer { cairo_surface_destroy(surface) }
        try draw(input, surface: surface, scale: 1, generated: generated)
        cairo_surface_finish(surface)
        let status = cairo_surface_status(surface)
        guard status == CAIRO_STATUS_SUCCESS else { throw .init(description: "cannot write \(path): \(String(cString: cairo_status_to_string(status)))") }
    }

    public static func png(_ input: Input, to path: String, dpi: Double = 150, generated: Date = Date()) throws(ReportWriter.Failure) {
        let scale = dpi / 72
        guard let surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, Int32((width * scale).rounded()), Int32((height * scale).rounded())) else {
            throw .init(description: "cannot create an image surface")
        }
        defer { cairo_surface_destroy(surface) }
        try draw(input, surface: surface, scale: scale, generated: generated)
        let status = cairo_surface_write_to_png(surface, path)
        guard status == CAIRO_STATUS_SUCCESS else { throw .init(description: "cannot write \(path): \(String(cString: cairo_status_to_string(status)))") }
    }

    static func draw(_ input: Input, surface: OpaquePointer, scale: Double, generated: Date) throws(ReportWriter.Failure) {
        guard let cr = cairo_create(surface) else { throw .init(description: "cannot draw") }
        defer { cairo_destroy(cr) }
        cairo_scale(cr, scale, scale)
        page(input, generated: generated, on: Canvas(cr: cr))
        cairo_show_page(cr)
        let status = cairo_status(cr)
        guard status == CAIRO_STATUS_SUCCESS else { throw .init(description: "drawing failed: \(String(cString: cairo_status_to_string(status)))") }
    }

    static func page(_ input: Input, generated: Date, on c: Canvas) {
        c.colour(.init(r: 1, g: 1, b: 1))
        c.rect(0, 0, width, height, fill: true)
        var y = margin + 10
        c.colour(.black)
        c.font(14, bold: true)
        c.text("Phantom quality control", x: margin, y: y)
        let titleWidth = c.width("Phantom quality control")
        c.font(9)
        c.text("\(input.device) · \(input.state)", x: margin + titleWidth + 12, y: y)
        y += 14
        c.font(7.5)
        c.colour(.grey)
        let baselineWords = input.baseline.map { "baseline: the first \($0.measurementIDs.count) scans" } ?? "baseline incomplete"
        let rules = String(format: "limits ±%.1f %% of the baseline mean; CUSUM k = max(%.1f SD, %.1f %% / 2), h = %.1f SD; a run of %d on one side warns",
                           input.rules.limitPercent, input.rules.cusumK, input.rules.cusumShiftPercent, input.rules.cusumH, input.rules.runLength)
        c.text("\(input.points.count) results\(input.since.map { " since \($0)" } ?? ""); \(baselineWords); \(rules)", x: margin, y: y)
        y += 10

        let names = (input.baseline.map { Array($0.regions.keys) } ?? Array(Set(input.points.flatMap { $0.deviationPercent.keys }))).sorted()
        let top = y + 6, bottom = height - margin - 18
        guard !names.isEmpty else {
            c.colour(.black)
            c.font(11)
            c.text("No results to chart yet: \(input.points.count) of the \(input.rules.baselineScans) scans the baseline needs.", x: margin, y: top + 40)
            footer(generated, on: c)
            return
        }
        let rowHeight = (bottom - top) / Double(names.count)
        let gap = 40.0, labelWidth = 44.0
        let panelWidth = (width - 2 * margin - gap - 2 * labelWidth) / 2
        for (k, name) in names.enumerated() {
            let rowTop = top + Double(k) * rowHeight
            let panel = (y: rowTop + 24, h: rowHeight - 44)
            let region = input.baseline?.regions[name]
            c.colour(.black)
            c.font(9.5, bold: true)
            let baselineText = region.map { String(format: "%@: baseline %.4f ± %.4f g/cm² (CV %.2f %%)", name, $0.meanGCm2, $0.sdGCm2, $0.sdGCm2 / $0.meanGCm2 * 100) } ?? name
            c.text(baselineText, x: margin, y: rowTop + 8)
            shewhart(input, region: name, x: margin + labelWidth, y: panel.y, w: panelWidth, h: panel.h, on: c)
            cusum(input, region: name, x: margin + 2 * labelWidth + panelWidth + gap, y: panel.y, w: panelWidth, h: panel.h, on: c)
        }
        legend(y: bottom + 4, on: c)
        footer(generated, on: c)
    }

    static func footer(_ generated: Date, on c: Canvas) {
        c.font(6.5)
        c.colour(.grey)
        c.text("DX-1 phantom QC · generated \(generated.formatted(.iso8601)) · rules and sources: docs/qc.md", x: width - margin, y: height - margin + 12, align: .right)
    }

    static func legend(y: Double, on c: Canvas) {
        var x = margin + 44
        c.font(7.5)
        for (colour, words) in [(Canvas.Colour.grey, "baseline"), (.black, "pass"), (Canvas.Colour(r: 0.9, g: 0.55, b: 0), "repeat required"), (.red, "failed")] {
            c.colour(colour)
            c.circle(x, y + 6, 2.4)
            c.colour(.black)
            c.text(words, x: x + 6, y: y + 8.5)
            x += c.width(words) + 22
        }
        c.colour(.blue)
        c.line(x, y + 6, x + 14, y + 6, width: 1.2)
        c.colour(.black)
        c.text("CUSUM C⁺ (up), C⁻ (down)", x: x + 18, y: y + 8.5)
    }

    static func colour(_ v: QualityControl.Verdict) -> Canvas.Colour {
        switch v {
        case .baseline: .grey
        case .pass: .black
        case .repeatRequired: Canvas.Colour(r: 0.9, g: 0.55, b: 0)
        case .fail: .red
        }
    }

    /// x of result i of n in a panel from x0, w wide.
    static func xOf(_ i: Int, _ n: Int, _ x0: Double, _ w: Double) -> Double {
        x0 + 6 + (w - 12) * (n > 1 ? Double(i) / Double(n - 1) : 0.5)
    }

    /// The dates under a panel: first, last and a few between.
    static func dates(_ points: [QualityControl.Point], x: Double, y: Double, w: Double, on c: Canvas) {
        let n = points.count
        guard n > 0 else { return }
        c.font(6.5)
        c.colour(.grey)
        let ticks = n <= 6 ? Array(0..<n) : Array(Set((0...5).map { $0 * (n - 1) / 5 })).sorted()
        // Results within two days of each other (a baseline made at commissioning, a repeat)
        // are told apart by the time of day; over longer spans the date says enough.
        let parse = { (s: String) in try? Date(s, strategy: .iso8601) }
        var short = false
        if let first = parse(points[0].at), let last = parse(points[n - 1].at) { short = last.timeIntervalSince(first) < 2 * 86_400 }
        for i in ticks {
            let px = xOf(i, n, x, w)
            c.line(px, y, px, y + 3, width: 0.5)
            let at = points[i].at
            let label = short ? String(at.dropFirst(5).prefix(11)).replacingOccurrences(of: "T", with: " ") : String(at.prefix(10))
            c.text(label, x: px, y: y + 11, align: .centre)
        }
    }

    static func frame(x: Double, y: Double, w: Double, h: Double, on c: Canvas) {
        c.colour(.light)
        c.rect(x, y, w, h, fill: false, width: 0.8)
    }

    /// A chart's frame and title, its limits at ±`limit` (dashed) and its centre line, labelled on the left.
    static func panel(_ title: String, limit: Double, format: String, yOf: (Double) -> Double,
                      x: Double, y: Double, w: Double, h: Double, on c: Canvas) {
        frame(x: x, y: y, w: w, h: h, on: c)
        c.font(7)
        c.colour(.black)
        c.text(title, x: x, y: y - 3)
        c.colour(.rose)
        c.line(x, yOf(limit), x + w, yOf(limit), width: 0.9, dashed: true)
        c.line(x, yOf(-limit), x + w, yOf(-limit), width: 0.9, dashed: true)
        c.colour(.grey)
        c.line(x, yOf(0), x + w, yOf(0), width: 0.6)
        c.font(6.5)
        for v in [limit, 0, -limit] { c.text(String(format: format, v), x: x - 3, y: yOf(v) + 2.2, align: .right) }
    }

    static func shewhart(_ input: Input, region: String, x: Double, y: Double, w: Double, h: Double, on c: Canvas) {
        let values = input.points.map { $0.deviationPercent[region] }
        let limit = input.rules.limitPercent
        let span = max(limit * 1.6, (values.compactMap { $0.map(abs) }.max() ?? 0) * 1.1)
        let yOf = { (d: Double) in y + h / 2 - d / span * h / 2 }
        panel("% from the baseline mean", limit: limit, format: "%+.1f", yOf: yOf, x: x, y: y, w: w, h: h, on: c)
        // The results, joined, each in its verdict's colour.
        let n = input.points.count
        var previous: (Double, Double)?
        c.colour(.init(r: 0.6, g: 0.6, b: 0.6))
        for (i, v) in values.enumerated() {
            guard let v else { previous = nil; continue }
            let p = (xOf(i, n, x, w), yOf(max(-span, min(span, v))))
            if let q = previous { c.line(q.0, q.1, p.0, p.1, width: 0.4) }
            previous = p
        }
        for (i, point) in input.points.enumerated() {
            guard let v = values[i] else { continue }
            c.colour(colour(point.verdict))
            c.circle(xOf(i, n, x, w), yOf(max(-span, min(span, v))), n > 150 ? 1.3 : 2.0)
        }
        dates(input.points, x: x, y: y + h, w: w, on: c)
    }

    static func cusum(_ input: Input, region: String, x: Double, y: Double, w: Double, h: Double, on c: Canvas) {
        let hLimit = input.rules.cusumH
        let highs = input.points.map { $0.cusumHigh[region] }, lows = input.points.map { $0.cusumLow[region] }
        let span = max(hLimit * 1.3, ((highs + lows).compactMap { $0 }.max() ?? 0) * 1.1)
        let yOf = { (v: Double) in y + h / 2 - v / span * h / 2 }
        panel("CUSUM (baseline SDs)", limit: hLimit, format: "%+.0f", yOf: yOf, x: x, y: y, w: w, h: h, on: c)
        let n = input.points.count
        for (series, sign) in [(highs, 1.0), (lows, -1.0)] {
            var previous: (Double, Double)?
            c.colour(.blue)
            for (i, v) in series.enumerated() {
                guard let v else { previous = nil; continue }
                let p = (xOf(i, n, x, w), yOf(sign * min(span, v)))
                if let q = previous { c.line(q.0, q.1, p.0, p.1, width: 1.0) }
                previous = p
            }
        }
        for (i, point) in input.points.enumerated() where point.verdict == .fail || point.verdict == .repeatRequired {
            guard let hi = highs[i], let lo = lows[i], max(hi, lo) > hLimit else { continue }
            c.colour(colour(point.verdict))
            c.circle(xOf(i, n, x, w), yOf(hi > lo ? min(span, hi) : -min(span, lo)), 2.2)
        }
        dates(input.points, x: x, y: y + h, w: w, on: c)
    }
}
