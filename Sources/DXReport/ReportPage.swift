import CCairo
import DXAcquisition
import DXAnalysis
import DXClinical
import DXDecomposition
import Foundation

/// The exam's report as a physician reads it, on A4 pages: patient and exam; for each site its
/// image with the ROIs and labels, the table (region, BMD, T, Z, BMC, area), exclusions with
/// their reasons, findings; the reference chart (BMD against age: the young-adult mean, ±1 and
/// ±2 SD, the osteoporosis line, the patient's point); the diagnosis; the follow-up; the dose.
/// Drawn with cairo from `ExamResults` and the sites' decomposed scans (which carry the
/// images), nothing else. A part that does not fit goes whole to the next page (a full exam
/// with both hips and a follow-up takes two); every page names the patient and the exam.
enum ReportPage {
    static let width = 595.0, height = 842.0, margin = 36.0
    /// The lowest a block may reach: the footer (up to three lines) sits below it.
    static let contentBottom = height - margin - 30

    /// One part of the page drawn from its top (y, points); returns the y below it.
    typealias Block = (Canvas, Double) -> Double

    /// The report's parts in order: each site, the diagnosis, the follow-up, the dose. A part is
    /// never split across pages.
    static func blocks(_ r: ExamResults, scans: [String: DecomposedScan]) -> [Block] {
        var out: [Block] = []
        // Made without a passing QC that day, or under an override of the lockout: first, where
        // no reader misses it.
        if !r.qualityControl.isEmpty { out.append { c, y in drawQualityControl(r.qualityControl, at: y, on: c) } }
        for site in r.sites {
            if let result = site.result {
                // Without its image (a decomposed scan not readable here) the table still stands.
                out.append { c, y in drawSite(site, result, scan: scans[site.site], ageYears: r.patient.ageYears, at: y, on: c) }
            } else {
                out.append { c, y in
                    c.colour(.black)
                    c.font(10, bold: true)
                    c.text(site.title, x: margin, y: y)
                    c.font(8.5)
                    c.colour(.grey)
                    c.text(site.note ?? site.status, x: margin + 120, y: y)
                    return y + 16
                }
            }
        }
        out.append { c, y in drawDiagnosis(r, at: y, on: c) }
        if let f = r.followUp { out.append { c, y in drawFollowUp(f, at: y, on: c) } }
        out.append { c, y in drawDose(r, at: y, on: c) }
        return out
    }

    /// The blocks shared out over pages: each measured by drawing it where it is not seen
    /// (a cairo recording surface), a page broken before a block that would reach the footer.
    static func pages(_ r: ExamResults, scans: [String: DecomposedScan]) -> [[Block]] {
        let all = blocks(r, scans: scans)
        guard let surface = cairo_recording_surface_create(CAIRO_CONTENT_COLOR, nil) else { return [all] }
        defer { cairo_surface_destroy(surface) }
        guard let cr = cairo_create(surface) else { return [all] }
        defer { cairo_destroy(cr) }
        let scratch = Canvas(cr: cr)
        var pages: [[Block]] = [[]]
        var y = firstPageTop
        for block in all {
            let bottom = block(scratch, y)
            if bottom > contentBottom, !(pages.last?.isEmpty ?? true) {
                pages.append([])
                y = nextPageTop
                pages[pages.count - 1].append(block)
                y = block(scratch, y)
            } else {
                pages[pages.count - 1].append(block)
                y = bottom
            }
        }
        return pages
    }

    static let firstPageTop = margin + 52, nextPageTop = margin + 30

    /// Page `index` (from 0) of `count`: its header, its blocks, the footer.
    static func draw(_ r: ExamResults, page blocks: [Block], index: Int, count: Int, generated: Date, on c: Canvas) {
        c.colour(.init(r: 1, g: 1, b: 1))
        c.rect(0, 0, width, height, fill: true)
        var y = margin + 14
        c.colour(.black)
        if index == 0 {
            c.font(15, bold: true)
            c.text("Bone densitometry (DXA)", x: margin, y: y)
            c.font(8)
            c.colour(.grey)
            c.text("DX-1 · exam \(r.examID) · \(r.examDate) · \(r.state.rawValue)", x: width - margin, y: y, align: .right)
            y += 16
            c.colour(.black)
            c.font(9.5, bold: true)
            c.text(r.patient.name, x: margin, y: y)
            c.font(9)
            let age = r.patient.ageYears.map { String(format: "%.0f years", $0.rounded(.down)) } ?? "age unknown"
            c.text("ID \(r.patient.id) · \(r.patient.sex) · born \(r.patient.birthDate) · \(age)", x: margin + 150, y: y)
            y += 8
        } else {
            // A continuation page names the patient and the exam: pages get separated.
            c.font(9.5, bold: true)
            c.text(r.patient.name, x: margin, y: y)
            c.font(8)
            c.colour(.grey)
            c.text("ID \(r.patient.id) · DX-1 · exam \(r.examID) · \(r.examDate) · continued", x: width - margin, y: y, align: .right)
            y += 8
        }
        c.colour(.light)
        c.line(margin, y, width - margin, y, width: 1)
        y = index == 0 ? firstPageTop : nextPageTop
        for block in blocks { y = block(c, y) }

        // Footer.
        c.font(6.5)
        c.colour(.grey)
        let stamp = generated.formatted(.iso8601)
        let zScored = r.sites.contains { $0.result?.rois.contains { $0.zScore != nil } == true }
        let zNote = zScored ? "" : " Z-scores need an age- and sex-matched reference, not installed."
        let pageNote = count > 1 ? " Page \(index + 1) of \(count)." : ""
        c.paragraph("Reference \(r.reference); analysis \(r.analysisVersion); generated \(stamp). BMD is this device's calibration of hydroxyapatite: T-scores against the published references are indicative until the device is cross-calibrated (docs/clinical-references.md).\(zNote)\(pageNote)",
                    x: margin, y: height - margin - 10, width: width - 2 * margin, leading: 8)
    }

    /// Why these numbers were measured without the day's passing phantom QC.
    static func drawQualityControl(_ notes: [String], at top: Double, on c: Canvas) -> Double {
        var y = top + 2
        let x = margin + 8, w = width - 2 * margin - 16
        // Measured first (drawn where it is not seen) so the box fits its text.
        c.font(8.5)
        var bottom = y + 12
        for note in notes { bottom += c.measureParagraph(note, width: w, leading: 10) }
        c.colour(.rose)
        c.rect(margin, y - 10, width - 2 * margin, bottom - y + 8, fill: true)
        c.colour(.red)
        c.font(9.5, bold: true)
        c.text("Quality control: this exam was not made on a unit that passed its phantom QC that day", x: x, y: y)
        y += 12
        c.colour(.black)
        c.font(8.5)
        for note in notes { y = c.paragraph(note, x: x, y: y, width: w, leading: 10) }
        return max(y, bottom) + 8
    }

    /// The diagnosis and the rule it was read by.
    static func drawDiagnosis(_ r: ExamResults, at top: Double, on c: Canvas) -> Double {
        var y = top + 4
        c.colour(.light)
        c.line(margin, y, width - margin, y, width: 1)
        y += 16
        c.colour(.black)
        c.font(10.5, bold: true)
        let d = r.diagnosis
        if let t = d.tScore, let roi = d.roi {
            c.text("Diagnosis: \(d.words) (lowest T-score \(reportedSigned(t, digits: 1)) at \(roi))", x: margin, y: y)
        } else if let z = d.zScore, let roi = d.roi {
            c.text("Bone density \(d.words) (lowest Z-score \(reportedSigned(z, digits: 1)) at \(roi))", x: margin, y: y)
        } else {
            c.text("Diagnosis: \(d.words)", x: margin, y: y)
        }
        y += 13
        c.font(8)
        c.colour(.grey)
        let rule = d.zInterpretation != nil || d.whoClass == nil && d.tScore == nil && d.basis.contains("under 50")
            ? "Z-scores apply to \(d.basis) (ISCD): Z ≤ −2.0 is below the expected range for age; the WHO classes do not apply."
            : "WHO classes (T ≥ −1.0 normal; −2.5 < T < −1.0 low bone mass; T ≤ −2.5 osteoporosis) apply to \(d.basis)."
        y = c.paragraph(rule + (d.note.map { " Note: \($0)." } ?? ""), x: margin, y: y, width: width - 2 * margin, leading: 10)
        if let v = r.vfaIndication {
            c.colour(.black)
            c.font(8, bold: v.indicated)
            let words = "Vertebral fracture assessment \(v.indicated ? "indicated" : "not indicated") (ISCD 2019): \(v.reasons.joined(separator: "; "))"
                + (v.unanswered.isEmpty ? "." : ". Not answered: \(v.unanswered.joined(separator: ", ")).")
            y = c.paragraph(words, x: margin, y: y + 2, width: width - 2 * margin, leading: 10)
        }
        return y
    }

    /// The dose-area product per site and in all.
    static func drawDose(_ r: ExamResults, at top: Double, on c: Canvas) -> Double {
        var y = top + 6
        c.colour(.black)
        c.font(9, bold: true)
        c.text("Dose (dose-area product)", x: margin, y: y)
        c.font(8)
        y += 12
        for s in r.sites {
            guard let dose = s.dose else { continue }
            c.text(s.title, x: margin, y: y)
            c.text(String(format: "%.2f mGy·cm²  (%d scans%@)", dose.dapMGyCm2, dose.scans, dose.estimated ? ", estimated" : ""), x: margin + 150, y: y)
            y += 10
        }
        c.font(8, bold: true)
        c.text("exam", x: margin, y: y)
        c.text(String(format: "%.2f mGy·cm²  (%d scans%@)", r.dose.dapMGyCm2, r.dose.scans, r.dose.estimated ? ", estimated in part" : ""), x: margin + 150, y: y)
        return y + 4
    }

    /// The comparison with the prior exam: per monitored ROI prior and current BMD, the change
    /// in g/cm² and %, the LSC and whether the change reaches it; then what was not compared.
    static func drawFollowUp(_ f: FollowUp, at top: Double, on c: Canvas) -> Double {
        var y = top + 6
        c.colour(.black)
        c.font(9, bold: true)
        c.text("Change since exam \(f.prior.examID) of \(f.prior.examDate)", x: margin, y: y)
        y += 12
        let columns: [(String, Double)] = [("site", margin), ("region", margin + 80), ("prior", margin + 160), ("now", margin + 210),
                                           ("change g/cm²", margin + 260), ("%", margin + 335), ("LSC", margin + 375), ("significant", margin + 420)]
        c.font(7.5, bold: true)
        c.colour(.grey)
        for (title, x) in columns { c.text(title, x: x, y: y) }
        y += 10
        c.font(8)
        for ch in f.changes {
            let verdict = ch.significant.map { $0 ? (ch.changeGCm2 < 0 ? "yes, a loss" : "yes, a gain") : "no" } ?? "not judged"
            let cells = [Site(rawValue: ch.site)?.title ?? ch.site, ch.roi, String(format: "%.3f", ch.priorBMDGCm2), String(format: "%.3f", ch.bmdGCm2),
                         reportedSigned(ch.changeGCm2, digits: 3), reportedSigned(ch.changePercent, digits: 1),
                         ch.lscGCm2.map { String(format: "%.3f", $0) } ?? "—", verdict]
            c.colour(ch.significant == true ? .black : .grey)
            if ch.significant == true { c.font(8, bold: true) } else { c.font(8) }
            for (cell, (_, x)) in zip(cells, columns) { c.text(cell, x: x, y: y) }
            y += 10
        }
        let notes = f.changes.flatMap { ch in ch.notes.map { "\(ch.roi): \($0)" } } + f.notes
        if !notes.isEmpty {
            c.font(7)
            c.colour(.grey)
            var seen = Set<String>()
            y = c.paragraph(notes.filter { seen.insert($0).inserted }.joined(separator: ". ") + ".", x: margin, y: y, width: width - 2 * margin, leading: 9)
        }
        return y
    }

    /// One analysed site: image left, table and findings right; the reference chart under the
    /// spine's table, beside a hip's.
    static func drawSite(_ site: ExamResults.Site, _ result: SiteResult, scan: DecomposedScan?, ageYears: Double?, at top: Double, on c: Canvas) -> Double {
        c.colour(.black)
        c.font(10, bold: true)
        c.text(site.title, x: margin, y: top)
        let imageTop = top + 8
        // A hip's image is smaller than the spine's: three sites share the page.
        let isHip = result.hip != nil
        var w = isHip ? 130.0 : 190.0, h = isHip ? 135.0 : 200.0
        if let scan, scan.geometry.channels > 0, scan.geometry.lines > 0 {
            let map = BoneMap(scan)
            // The image at its true aspect, within its width and 250 pt (a hip 140 pt) high.
            let aspect = (Double(map.rows) * map.dy) / (Double(map.columns) * map.dx)
            let tallest = isHip ? 140.0 : 250.0
            h = w * aspect
            if h > tallest { h = tallest; w = h / aspect }
            let rgb = result.vfa != nil ? ReadingImage.raster(map) : SpineFigure.raster(map)
            c.image(rgb: rgb, columns: map.columns, rows: map.rows, x: margin, y: imageTop, w: w, h: h)
            if let spine = result.spine { SpineFigure.overlay(spine, result: result, map: map, box: (margin, imageTop, w, h), on: c) }
            if let hip = result.hip { HipFigure.overlay(hip, result: result, map: map, box: (margin, imageTop, w, h), on: c) }
            if let vfa = result.vfa { VFAFigure.overlay(vfa, map: map, box: (margin, imageTop, w, h), on: c) }
        } else {
            c.colour(.light)
            c.rect(margin, imageTop, w, h, fill: false, width: 1)
            c.colour(.grey)
            c.font(8)
            c.text("image not readable here", x: margin + w / 2, y: imageTop + h / 2, align: .centre)
        }

        // The table.
        let tx = margin + w + 18
        if let vfa = result.vfa {
            var y = VFAFigure.table(vfa, x: tx, top: top + 18, on: c)
            if let last = site.corrections.last {
                c.font(7.5)
                c.colour(.black)
                let count = site.corrections.count > 1 ? " (\(site.corrections.count) corrections)" : ""
                y = c.paragraph("Corrected by \(last.by), \(last.at.prefix(16).replacingOccurrences(of: "T", with: " ")): \(last.change); \(last.reason)\(count).",
                                x: tx, y: y + 1, width: 290, leading: 9)
            }
            return max(y, imageTop + h) + 8
        }
        var y = top + 18
        c.colour(.black)
        c.font(8, bold: true)
        let columns: [(String, Double)] = [("Region", 0), ("BMD g/cm²", 92), ("T", 128), ("Z", 158), ("BMC g", 200), ("Area cm²", 246)]
        for (title, dx) in columns { c.text(title, x: tx + dx, y: y, align: dx == 0 ? .left : .right) }
        y += 3
        c.colour(.light)
        c.line(tx, y, tx + 250, y)
        y += 10
        for roi in result.rois {
            c.colour(roi.excluded ? .grey : .black)
            c.font(8, bold: roi.name == "L1-L4")
            c.text(roi.name + (roi.excluded ? " *" : ""), x: tx, y: y)
            func n(_ v: Double?, _ f: String) -> String { v.map { String(format: f, $0) } ?? "—" }
            c.text(n(roi.bmdGCm2, "%.3f"), x: tx + 92, y: y, align: .right)
            c.text(n(roi.tScore, "%+.1f"), x: tx + 128, y: y, align: .right)
            c.text(n(roi.zScore, "%+.1f"), x: tx + 158, y: y, align: .right)
            c.text(roi.bmdGCm2 == nil ? "—" : String(format: "%.2f", roi.bmcG), x: tx + 200, y: y, align: .right)
            c.text(roi.bmdGCm2 == nil ? "—" : String(format: "%.2f", roi.areaCm2), x: tx + 246, y: y, align: .right)
            y += 11
        }
        c.font(7.5)
        c.colour(.grey)
        // A hip's notes stop short of the chart beside its table.
        let textWidth = isHip ? 250 : width - margin - tx
        let shown = result.rois.filter { !$0.forDiagnosis }.map(\.name)
        if !shown.isEmpty {
            y = c.paragraph("\(shown.joined(separator: ", ")): shown, not for diagnosis (ISCD).", x: tx, y: y + 2, width: textWidth, leading: 9)
        }
        if let used = result.roi("L1-L4")?.vertebraeUsed, used.count < 4, !used.isEmpty {
            y = c.paragraph("L1-L4 over \(used.joined(separator: ", ")).", x: tx, y: y + 2, width: textWidth, leading: 9)
        }
        for roi in result.rois where roi.excluded {
            y = c.paragraph("* \(roi.name) excluded: \(roi.reason ?? "")", x: tx, y: y + 1, width: textWidth, leading: 9)
        }
        if let labelling = result.spine?.labelling {
            let words = labelling.words
            y = c.paragraph(words.prefix(1).uppercased() + words.dropFirst() + ".", x: tx, y: y + 1, width: textWidth, leading: 9)
        }
        if let last = site.corrections.last {
            c.colour(.black)
            let count = site.corrections.count > 1 ? " (\(site.corrections.count) corrections)" : ""
            y = c.paragraph("ROIs corrected by \(last.by), \(last.at.prefix(16).replacingOccurrences(of: "T", with: " ")): \(last.change); \(last.reason)\(count).",
                            x: tx, y: y + 1, width: textWidth, leading: 9)
        }
        c.colour(.red)
        for warning in result.warnings where warning.code != "reference_secondary" {
            y = c.paragraph("! " + warning.message, x: tx, y: y + 1, width: textWidth, leading: 9)
        }
        // The reference chart for the diagnostic ROI.
        // Spine: L1-L4; hip: the lower-scoring of the neck and the total hip.
        let hipROI = ["neck", "total_hip"].compactMap { result.roi($0) }.filter { $0.bmdGCm2 != nil && !$0.excluded }
            .min { ($0.tScore ?? 0) < ($1.tScore ?? 0) }
        let chartROI = result.roi("L1-L4") ?? hipROI
        let chartSite: ReferenceSite = chartROI?.name == "neck" ? .femoralNeck : chartROI?.name == "total_hip" ? .totalHip : .lumbarSpine
        if let total = chartROI, let bmd = total.bmdGCm2 {
            if isHip {
                // A hip's beside its table, a narrow one, over the image's height.
                let x = tx + 274, chartTop = top + 26
                let box = (x: x, y: chartTop, w: width - margin - 18 - x, h: max(60, imageTop + h - 16 - chartTop))
                ReferenceChart.draw(bmd: bmd, ageYears: ageYears, reference: ReferenceSet.nhanes.youngAdult(chartSite),
                                    label: total.name, box: box, on: c)
                y = max(y, box.y + box.h + 16)
            } else {
                // The spine's under its table, beside the tall image.
                let chartTop = max(y + 8, top + 150)
                let chartHeight = min(120, imageTop + h - chartTop)
                if chartHeight > 60 {
                    ReferenceChart.draw(bmd: bmd, ageYears: ageYears, reference: ReferenceSet.nhanes.youngAdult(chartSite),
                                        label: total.name, box: (tx + 18, chartTop, textWidth - 24, chartHeight), on: c)
                    y = chartTop + chartHeight
                }
            }
        }
        return max(imageTop + h, y) + 20
    }
}

/// The spine's bone image and its analysis drawn over it.
enum SpineFigure {
    /// Grey from 0 (black) to 2 g/cm² (white); no number: dark red.
    static func raster(_ map: BoneMap) -> [UInt8] {
        var rgb = [UInt8](repeating: 0, count: map.columns * map.rows * 3)
        for i in 0..<(map.columns * map.rows) {
            let v = map.bone[i]
            if v.isFinite {
                let g = UInt8(max(0, min(255, (Double(v) / 2 * 255).rounded())))
                rgb[3 * i] = g; rgb[3 * i + 1] = g; rgb[3 * i + 2] = g
            } else {
                rgb[3 * i] = 100
            }
        }
        return rgb
    }

    /// Disc lines (yellow), ROI sides (blue; grey for an excluded vertebra) and labels.
    static func overlay(_ m: SpineMeasurement, result: SiteResult, map: BoneMap, box: (x: Double, y: Double, w: Double, h: Double), on c: Canvas) {
        let sx = box.w / (Double(map.columns) * map.dx), sy = box.h / (Double(map.rows) * map.dy)
        func px(_ x: Double) -> Double { box.x + (x - map.x0 + map.dx / 2) * sx }
        func py(_ y: Double) -> Double { box.y + (y - map.y0 + map.dy / 2) * sy }
        c.font(7, bold: true)
        for v in m.vertebrae where v.name.hasPrefix("L") && v.name.count == 2 {
            let excluded = result.roi(v.name)?.excluded ?? true
            let left = v.leftXMM - 5, right = v.rightXMM + 5
            c.colour(excluded ? .grey : .yellow)
            for line in [v.upper, v.lower] { c.line(px(left), py(line.y(atX: left)), px(right), py(line.y(atX: right)), width: 0.9) }
            c.colour(excluded ? .grey : .cyan)
            c.line(px(left), py(v.upper.y(atX: left)), px(left), py(v.lower.y(atX: left)), width: 0.9)
            c.line(px(right), py(v.upper.y(atX: right)), px(right), py(v.lower.y(atX: right)), width: 0.9)
            c.colour(excluded ? .grey : .yellow)
            c.text(v.name, x: px(right) + 3, y: py(v.centreYMM) + 2.5)
        }
    }
}

/// The hip's analysis over its image: the neck box (yellow; grey when excluded), the total
/// hip's cuts and the trochanteric line (cyan), Ward's square (magenta, not for diagnosis).
enum HipFigure {
    static func overlay(_ m: HipMeasurement, result: SiteResult, map: BoneMap, box: (x: Double, y: Double, w: Double, h: Double), on c: Canvas) {
        let sx = box.w / (Double(map.columns) * map.dx), sy = box.h / (Double(map.rows) * map.dy)
        func px(_ x: Double) -> Double { box.x + (x - map.x0 + map.dx / 2) * sx }
        func py(_ y: Double) -> Double { box.y + (y - map.y0 + map.dy / 2) * sy }
        func polyline(_ p: [TablePoint], closed: Bool) {
            guard p.count >= 2 else { return }
            for i in 0..<(closed ? p.count : p.count - 1) {
                let a = p[i], b = p[(i + 1) % p.count]
                c.line(px(a.xMM), py(a.yMM), px(b.xMM), py(b.yMM), width: 0.9)
            }
        }
        c.colour(result.roi("neck")?.excluded == false ? .yellow : .grey)
        polyline(m.neckBox, closed: true)
        c.colour(.cyan)
        polyline(m.medialCut, closed: false)
        if let b = m.bottomCut { polyline(b, closed: false) }
        if let t = m.trochanterLine { polyline(t, closed: false) }
        if let w = m.wardsBox {
            c.colour(.magenta)
            polyline(w, closed: true)
        }
    }
}

/// BMD against age: the young-adult mean with ±1 SD (green band), −2 SD, and −2.5 SD (the
/// osteoporosis line, red), the patient's point. The reference installed is a young-adult one
/// (no age-matched curve), so the bands are level across age; the point sits at the patient's
/// age when it is known, else at the chart's middle.
enum ReferenceChart {
    static func draw(bmd: Double, ageYears: Double?, reference: YoungAdultReference?, label: String,
                     box: (x: Double, y: Double, w: Double, h: Double), on c: Canvas) {
        guard let ref = reference else { return }
        let lo = min(bmd, ref.meanGCm2 - 3.2 * ref.sdGCm2), hi = max(bmd, ref.meanGCm2 + 2 * ref.sdGCm2)
        func py(_ v: Double) -> Double { box.y + box.h - (v - lo) / (hi - lo) * box.h }
        func px(_ age: Double) -> Double { box.x + (age - 20) / 70 * box.w }
        c.colour(.green)
        c.rect(box.x, py(ref.meanGCm2 + ref.sdGCm2), box.w, py(ref.meanGCm2 - ref.sdGCm2) - py(ref.meanGCm2 + ref.sdGCm2), fill: true)
        c.colour(.amber)
        c.rect(box.x, py(ref.meanGCm2 - ref.sdGCm2), box.w, py(ref.meanGCm2 - 2.5 * ref.sdGCm2) - py(ref.meanGCm2 - ref.sdGCm2), fill: true)
        c.colour(.rose)
        c.rect(box.x, py(ref.meanGCm2 - 2.5 * ref.sdGCm2), box.w, box.y + box.h - py(ref.meanGCm2 - 2.5 * ref.sdGCm2), fill: true)
        c.colour(.black)
        c.line(box.x, py(ref.meanGCm2), box.x + box.w, py(ref.meanGCm2), width: 0.8)
        c.colour(.grey)
        c.line(box.x, py(ref.meanGCm2 - 2 * ref.sdGCm2), box.x + box.w, py(ref.meanGCm2 - 2 * ref.sdGCm2), width: 0.5, dashed: true)
        c.colour(.red)
        c.line(box.x, py(ref.meanGCm2 - 2.5 * ref.sdGCm2), box.x + box.w, py(ref.meanGCm2 - 2.5 * ref.sdGCm2), width: 0.8)
        c.colour(.black)
        c.rect(box.x, box.y, box.w, box.h, fill: false, width: 0.5)
        c.font(6.5)
        // Every 10 years, or every 20 on a narrow chart.
        for age in stride(from: 20.0, through: 90, by: box.w < 150 ? 20 : 10) {
            c.text(String(Int(age)), x: px(age), y: box.y + box.h + 8, align: .centre)
        }
        c.text("age", x: box.x + box.w, y: box.y + box.h + 16, align: .right)
        for t in [1.0, 0, -1, -2, -2.5] {
            let v = ref.meanGCm2 + t * ref.sdGCm2
            guard v >= lo && v <= hi else { continue }
            c.text(String(format: "%.2f", v), x: box.x - 2, y: py(v) + 2, align: .right)
            c.text(t == 0 ? "T 0" : String(format: "%+.1f", t), x: box.x + box.w + 2, y: py(v) + 2)
        }
        c.text("\(label) g/cm²", x: box.x, y: box.y - 3)
        c.colour(.blue)
        c.circle(px(ageYears.map { min(90, max(20, $0)) } ?? 55), py(bmd), 2.8)
    }
}

/// The lateral spine as a reader looks for endplates: the bone image sharpened by unsharp
/// masking (high-boost filtering: the image plus `amount` times its difference from a Gaussian
/// blur of `sigmaMM`; Gonzalez & Woods, *Digital Image Processing*, 4th ed., §3.6) and then
/// windowed on its own 1st to 99.5th percentiles. The image boosted is itself smoothed over
/// `fineSigmaMM` first (the boost would raise each pixel's photon noise 2.5-fold; the analysis
/// reads a 3 × 3 mean too), so what is boosted is the band between the two blurs. The blur's
/// 4 mm lies between a cortical edge (1–2 mm) and a vertebral body (16–35 mm high): the
/// endplates and the bodies' outlines are boosted, the slow fall of bone mineral across the
/// body and the soft tissue are not. The
/// lateral image's bone (0.3–1 g/cm² through a body's side) fills the grey range instead of the
/// lower half of the AP images' 0–2 g/cm². Pixels without a number stay dark red. Display only:
/// every measurement is made on the bone image itself.
public enum ReadingImage {
    public static let sigmaMM = 4.0
    public static let fineSigmaMM = 0.7
    public static let amount = 1.5

    /// The enhanced image of `map` as 8-bit RGB rows, as `SpineFigure.raster`.
    public static func raster(_ map: BoneMap) -> [UInt8] {
        let n = map.columns * map.rows
        var rgb = [UInt8](repeating: 0, count: n * 3)
        guard n > 0 else { return rgb }
        let values = map.bone.map { Double($0) }
        let fine = blur(values, columns: map.columns, rows: map.rows, sigmaX: fineSigmaMM / map.dx, sigmaY: fineSigmaMM / map.dy)
        let blurred = blur(values, columns: map.columns, rows: map.rows, sigmaX: sigmaMM / map.dx, sigmaY: sigmaMM / map.dy)
        var boosted = [Double](repeating: .nan, count: n)
        for i in 0..<n where values[i].isFinite && blurred[i].isFinite { boosted[i] = fine[i] + amount * (fine[i] - blurred[i]) }
        let sorted = boosted.filter(\.isFinite).sorted()
        guard let first = sorted.first else {
            for i in 0..<n { rgb[3 * i] = 100 }
            return rgb
        }
        let low = sorted[Int(0.01 * Double(sorted.count - 1))], high = sorted[Int(0.995 * Double(sorted.count - 1))]
        let span = high > low ? high - low : max(abs(first), 1)
        for i in 0..<n {
            if boosted[i].isFinite {
                let g = UInt8(max(0, min(255, ((boosted[i] - low) / span * 255).rounded())))
                rgb[3 * i] = g; rgb[3 * i + 1] = g; rgb[3 * i + 2] = g
            } else {
                rgb[3 * i] = 100
            }
        }
        return rgb
    }

    /// A Gaussian blur over the finite pixels only (normalised convolution: each output is the
    /// weighted mean of the finite pixels within 3σ), separable, rows then columns; NaN where
    /// no finite pixel is within reach.
    static func blur(_ v: [Double], columns: Int, rows: Int, sigmaX: Double, sigmaY: Double) -> [Double] {
        func kernel(_ sigma: Double) -> [Double] {
            let reach = max(1, Int((3 * sigma).rounded(.up)))
            return (-reach...reach).map { exp(-0.5 * Double($0 * $0) / max(sigma * sigma, 1e-9)) }
        }
        func pass(_ values: [Double], _ weights: [Double], along columnsFirst: Bool, k: [Double]) -> ([Double], [Double]) {
            var outV = [Double](repeating: 0, count: values.count), outW = outV
            let reach = k.count / 2
            for r in 0..<rows {
                for c in 0..<columns {
                    var sv = 0.0, sw = 0.0
                    for d in -reach...reach {
                        let (rr, cc) = columnsFirst ? (r, c + d) : (r + d, c)
                        guard rr >= 0, rr < rows, cc >= 0, cc < columns else { continue }
                        let j = rr * columns + cc
                        sv += k[d + reach] * values[j]; sw += k[d + reach] * weights[j]
                    }
                    outV[r * columns + c] = sv; outW[r * columns + c] = sw
                }
            }
            return (outV, outW)
        }
        let weights = v.map { $0.isFinite ? 1.0 : 0 }
        let masked = v.map { $0.isFinite ? $0 : 0 }
        let (v1, w1) = pass(masked, weights, along: true, k: kernel(sigmaX))
        let (v2, w2) = pass(v1, w1, along: false, k: kernel(sigmaY))
        return zip(v2, w2).map { $1 > 1e-6 ? $0 / $1 : .nan }
    }
}

/// The lateral spine's morphometry over its image and beside it: each body's six points joined
/// along its endplates and its label with its grade (green grade 0, amber 1, rose 2, red 3;
/// grey unreadable), and a table of heights, grades and types.
enum VFAFigure {
    static func colour(_ v: VertebralBody) -> Canvas.Colour {
        guard v.readable else { return .grey }
        return [Canvas.Colour.green, .amber, .rose, .red][min(3, max(0, v.grade ?? 0))]
    }

    static func overlay(_ m: VFAMeasurement, map: BoneMap, box: (x: Double, y: Double, w: Double, h: Double), on c: Canvas) {
        let sx = box.w / (Double(map.columns) * map.dx), sy = box.h / (Double(map.rows) * map.dy)
        func px(_ x: Double) -> Double { box.x + (x - map.x0 + map.dx / 2) * sx }
        func py(_ y: Double) -> Double { box.y + (y - map.y0 + map.dy / 2) * sy }
        c.font(5.5, bold: true)
        for v in m.vertebrae where v.points.count == 6 {
            c.colour(colour(v))
            for k in [0, 3] {
                c.line(px(v.points[k][0]), py(v.points[k][1]), px(v.points[k + 1][0]), py(v.points[k + 1][1]), width: 0.7)
                c.line(px(v.points[k + 1][0]), py(v.points[k + 1][1]), px(v.points[k + 2][0]), py(v.points[k + 2][1]), width: 0.7)
            }
            let label = v.name + ((v.grade ?? 0) > 0 ? " " + (v.gradeShown ?? "") : "")
            c.text(label, x: px(v.points[2][0]) + 4, y: py((v.points[2][1] + v.points[5][1]) / 2) + 2)
        }
    }

    /// Returns the y under the table.
    static func table(_ m: VFAMeasurement, x tx: Double, top: Double, on c: Canvas) -> Double {
        var y = top
        c.colour(.black)
        c.font(8, bold: true)
        let columns: [(String, Double)] = [("Vertebra", 0), ("Anterior", 95), ("Middle", 145), ("Posterior", 200), ("Grade", 235), ("Type", 245)]
        for (title, dx) in columns { c.text(title, x: tx + dx, y: y, align: dx == 0 || title == "Type" ? .left : .right) }
        y += 3
        c.colour(.light)
        c.line(tx, y, tx + 290, y)
        y += 9
        c.font(7.5)
        for v in m.vertebrae {
            c.colour(v.readable ? .black : .grey)
            if (v.grade ?? 0) > 0 { c.font(7.5, bold: true) } else { c.font(7.5) }
            c.text(v.name, x: tx, y: y)
            if v.readable {
                func mm(_ d: Double?) -> String { d.map { String(format: "%.1f", $0) } ?? "—" }
                c.text(mm(v.anteriorMM), x: tx + 95, y: y, align: .right)
                c.text(mm(v.middleMM), x: tx + 145, y: y, align: .right)
                c.text(mm(v.posteriorMM), x: tx + 200, y: y, align: .right)
                c.text((v.gradeShown ?? "—") + (v.gradeBy != nil || v.pointsBy != nil ? "*" : ""), x: tx + 235, y: y, align: .right)
                if v.gradeBy != nil {
                    c.text((v.kind?.rawValue ?? "none") + " (reader; measured " + v.measuredGradeShown + ")", x: tx + 245, y: y)
                } else if let kind = v.kind {
                    c.text(String(format: "%@ (%.0f %%)", kind.rawValue, (v.heightLoss ?? 0) * 100), x: tx + 245, y: y)
                }
                y += 9
                if v.uncertainHeight != nil, v.gradeBy == nil, let reason = v.reason {
                    c.colour(.grey)
                    c.font(7.5)
                    y = c.paragraph(reason, x: tx + 40, y: y, width: 250, leading: 9)
                }
            } else {
                y = c.paragraph("not readable: \(v.reason ?? "")", x: tx + 40, y: y, width: 250, leading: 9)
            }
        }
        c.font(8, bold: true)
        c.colour(.black)
        y = c.paragraph(m.summary, x: tx, y: y + 4, width: 290, leading: 10)
        c.font(7)
        c.colour(.grey)
        y = c.paragraph("Heights in mm along each body's axis. Genant grades from the measured heights (1: 20–25 %, 2: 25–40 %, 3: over 40 % lost); a physician confirms.",
                        x: tx, y: y + 2, width: 290, leading: 9)
        if m.vertebrae.contains(where: { $0.gradeBy != nil || $0.pointsBy != nil }) {
            y = c.paragraph("* points placed or grade set by the reader (on the exam's record).", x: tx, y: y + 1, width: 290, leading: 9)
        }
        for w in m.warnings { y = c.paragraph("! " + w.message, x: tx, y: y + 1, width: 290, leading: 9) }
        return y
    }
}
