import DXDecomposition
import Foundation

/// One vertebral body of the lateral image as morphometry reads it: its three heights, the six
/// points they run between, and its Genant grade. A body that cannot be read says why and has
/// no grade (never a 0 by default).
public struct VertebralBody: Sendable, Codable, Equatable {
    /// Genant's types: the anterior height lost (wedge), the middle (biconcave), all three
    /// (crush).
    public enum Kind: String, Sendable, Codable { case wedge, biconcave, crush }

    public var name: String
    public var readable: Bool
    public var reason: String?
    /// Heights along the body's own axis, mm.
    public var anteriorMM: Double?
    public var middleMM: Double?
    public var posteriorMM: Double?
    /// The six points, table millimetres [x, y]: upper endplate posterior, middle, anterior,
    /// then the lower endplate's.
    public var points: [[Double]]
    /// The body's tilt from the endplates (degrees; positive: the anterior end lower).
    public var tiltDegrees: Double?
    /// The height this body would have unfractured, from the other bodies (mm).
    public var expectedMM: Double?
    /// The largest of the three losses of height (0…1) and what it is.
    public var heightLoss: Double?
    public var grade: Int?
    public var kind: Kind?
    /// "reader" when the six points were placed by hand (`ROICorrection.vfaPoints`); nil when
    /// the analysis found them.
    public var pointsBy: String?
    /// "reader" when the grade and type are the reader's (`ROICorrection.vfaGrades`), over
    /// `measuredGrade`, the grade the heights give (nil when the body could not be measured).
    public var gradeBy: String?
    public var measuredGrade: Int?
    /// "anterior", "posterior" or "anterior_posterior": the height at that corner (or both)
    /// could not be read (its standard error over the limit), the middle could. Such a body is
    /// graded only when the heights read already show a fracture (the grade is then the least
    /// the body can have, and its type is not told), and is unreadable otherwise; its height at
    /// such a corner is nil.
    public var uncertainHeight: String?
    /// With both corners uncertain: the taller corner's height less twice its standard error
    /// (the least it can be), which the grading divides the middle by. Not stored: it serves
    /// the grading only.
    var cornerAtLeastMM: Double?

    /// The grade as shown: "≥2" for a grade found with a corner uncertain (the least the body
    /// can have), "2" otherwise, nil without a grade. The reader's grade is shown as it is.
    public var gradeShown: String? { grade.map { (uncertainHeight != nil && gradeBy == nil ? "≥" : "") + String($0) } }
    /// The grade the heights gave under a reader's grade, with "≥" as `gradeShown`; "—" when
    /// the body could not be measured.
    public var measuredGradeShown: String { measuredGrade.map { (uncertainHeight != nil ? "≥" : "") + String($0) } ?? "—" }

    public enum CodingKeys: String, CodingKey {
        case name, readable, reason, points, grade
        case anteriorMM = "anterior_mm", middleMM = "middle_mm", posteriorMM = "posterior_mm", tiltDegrees = "tilt_deg"
        case expectedMM = "expected_mm", heightLoss = "height_loss", kind = "type"
        case pointsBy = "points_by", gradeBy = "grade_by", measuredGrade = "measured_grade"
        case uncertainHeight = "uncertain_height"
    }

    public init(name: String, anteriorMM: Double, middleMM: Double, posteriorMM: Double, points: [[Double]] = [], tiltDegrees: Double? = nil) {
        self.name = name; readable = true
        self.anteriorMM = anteriorMM; self.middleMM = middleMM; self.posteriorMM = posteriorMM
        self.points = points; self.tiltDegrees = tiltDegrees
    }

    public init(name: String, unreadable reason: String) {
        self.name = name; readable = false; self.reason = reason; points = []
    }

    /// A body from six points placed by the reader (checked by `ROICorrection.problem`): each
    /// height the distance between an upper point and the lower one under it, the tilt the
    /// endplates' mean direction.
    init(placed points: [[Double]], name: String) {
        func distance(_ a: [Double], _ b: [Double]) -> Double { ((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])).squareRoot() }
        self.init(name: name, anteriorMM: distance(points[2], points[5]), middleMM: distance(points[1], points[4]),
                  posteriorMM: distance(points[0], points[3]), points: points,
                  tiltDegrees: atan2(points[2][1] - points[0][1] + points[5][1] - points[3][1], points[2][0] - points[0][0] + points[5][0] - points[3][0]) * 180 / .pi)
        pointsBy = "reader"
    }
}

/// The lateral spine read: T4–L4 from top to bottom, the fractured and the unreadable named.
public struct VFAMeasurement: Sendable, Codable, Equatable {
    public var vertebrae: [VertebralBody]
    public var warnings: [AnalysisWarning]

    public init(vertebrae: [VertebralBody], warnings: [AnalysisWarning]) { self.vertebrae = vertebrae; self.warnings = warnings }

    public func vertebra(_ name: String) -> VertebralBody? { vertebrae.first { $0.name == name } }
    /// Vertebrae of grade 1 or more.
    public var fractured: [VertebralBody] { vertebrae.filter { ($0.grade ?? 0) >= 1 } }
    public var unreadable: [VertebralBody] { vertebrae.filter { !$0.readable } }

    /// One line for the report and the exam: "T12 grade 2 wedge (31 %); L1 grade 1 …" or "no
    /// fracture of T4–L4", with the unreadable levels.
    public var summary: String {
        var parts: [String] = []
        let f = fractured
        if f.isEmpty {
            parts.append(unreadable.count == vertebrae.count ? "no vertebra could be read" : "no vertebral fracture found")
        } else {
            parts.append(f.map { v in
                v.gradeBy != nil ? "\(v.name) grade \(v.grade ?? 0) \(v.kind?.rawValue ?? "") (the reader's)"
                    : String(format: "%@ grade %@%d%@ (%.0f %%)", v.name, v.uncertainHeight != nil ? "at least " : "", v.grade ?? 0,
                             v.kind.map { " " + $0.rawValue } ?? "", (v.heightLoss ?? 0) * 100)
            }.joined(separator: "; "))
        }
        let u = unreadable.map(\.name)
        if !u.isEmpty && u.count < vertebrae.count { parts.append("not readable: \(u.joined(separator: ", "))") }
        return parts.joined(separator: "; ")
    }
}

/// Vertebral fracture assessment on the lateral image: finds the vertebral bodies of T4–L4,
/// counts them up from L4 (and checks the count against the lowest rib, T12's), places the six
/// points of each body on its endplates, measures its anterior, middle and posterior heights
/// and grades it by Genant's semi-quantitative bands. docs/analysis.md ("Vertebral fracture
/// assessment") has the steps and their sources.
public enum VertebralMorphometry {
    /// T4 to L4, top to bottom.
    public static let levels = (4...12).map { "T\($0)" } + (1...4).map { "L\($0)" }
    /// Genant's bands of height loss (Genant et al., J Bone Miner Res 1993;8:1137–48): grade 1
    /// from 20 %, grade 2 from 25 %, grade 3 from 40 %.
    public static let gradeBands = [0.20, 0.25, 0.40]
    /// How far beyond a body's endplates a movement still reaches it: the endplate profiles
    /// are sampled from the 3 × 3 mean, one pixel (1 mm) either side, and the stillness check
    /// places a movement within a line or two of where it began.
    static let motionMarginMM = 2.0

    /// The Genant grade of a height loss (0…1).
    public static func grade(loss: Double) -> Int {
        gradeBands.lastIndex { loss >= $0 }.map { $0 + 1 } ?? 0
    }

    /// Grades readable bodies from their heights (top to bottom, in order). Each body's height
    /// loss is the largest of: anterior against posterior (wedge; the posterior against the
    /// anterior for the rare reversed wedge), middle against the taller of the two (biconcave),
    /// and its middle height against the expected one (crush: all three lost). The expected
    /// height is a robust line (Theil–Sen) through the middle heights of all readable bodies
    /// against their level, so that a fractured neighbour does not lower it. The middle, not
    /// the tallest or the mean: it is measured where the endplates are, not extrapolated to
    /// a corner (where a crushed body's heights read about a millimetre long), and the healthy
    /// wedging of the middle thoracic bodies does not touch it.
    public static func grade(_ bodies: [VertebralBody]) -> [VertebralBody] {
        let index = Dictionary(levels.enumerated().map { ($1, Double($0)) }, uniquingKeysWith: { a, _ in a })
        var samples: [(Double, Double)] = []
        for b in bodies where b.readable {
            guard let i = index[b.name], b.anteriorMM != nil, let m = b.middleMM, b.posteriorMM != nil else { continue }
            samples.append((i, m))
        }
        // The expected height needs enough bodies that two fractured ones cannot carry it.
        let line = samples.count >= 5 ? theilSen(samples) : nil
        return bodies.map { b in
            var b = b
            guard b.readable else { return b }
            if b.uncertainHeight != nil {
                return gradeWithoutCorner(b, expected: line.flatMap { l in index[b.name].map { l.intercept + l.slope * $0 } })
            }
            guard let a = b.anteriorMM, let m = b.middleMM, let p = b.posteriorMM, a > 0, m > 0, p > 0 else {
                return VertebralBody(name: b.name, unreadable: "its heights could not be measured")
            }
            var losses: [(VertebralBody.Kind, Double)] = [(.wedge, 1 - min(a, p) / max(a, p)), (.biconcave, 1 - m / max(a, p))]
            if let line, let i = index[b.name] {
                let expected = line.intercept + line.slope * i
                b.expectedMM = expected
                if expected > 0 { losses.append((.crush, 1 - m / expected)) }
            }
            let worst = losses.max { $0.1 < $1.1 } ?? (.wedge, 0)
            // The type: the body's own shape first (a wedge or a biconcave body also falls short
            // of the expected middle height) when it alone gives the same grade; a crush
            // otherwise. The loss given is the type's, so that it and the grade agree (for grade 0,
            // the largest).
            let shape = losses.prefix(2).max { $0.1 < $1.1 } ?? (.wedge, 0)
            let chosen = grade(loss: worst.1) > 0 && grade(loss: shape.1) == grade(loss: worst.1) ? shape : worst
            b.heightLoss = max(0, chosen.1)
            b.grade = grade(loss: chosen.1)
            b.kind = (b.grade ?? 0) > 0 ? chosen.0 : nil
            return b
        }
    }

    /// A body with one or both corners' heights uncertain, graded from what was read. One
    /// corner read: the middle against it and against the expected height, each one of the
    /// full rule's losses or less (the full rule divides by the taller corner), so a grade
    /// found here is the least the body can have. Both corners uncertain: the middle against
    /// the least the taller corner can be, only. The type is never told. A wedge needs both
    /// corners: with no fracture in the heights read, the body is unreadable (never graded 0
    /// for want of a corner).
    static func gradeWithoutCorner(_ body: VertebralBody, expected: Double?) -> VertebralBody {
        var b = body
        let read = [b.anteriorMM, b.posteriorMM].compactMap { $0 }.filter { $0 > 0 }
        guard let m = b.middleMM, m > 0 else {
            return VertebralBody(name: b.name, unreadable: b.reason ?? "its heights could not be measured")
        }
        var losses: [Double] = []
        if let c = read.max() {
            losses.append(1 - m / c)
            if let expected, expected > 0 {
                b.expectedMM = expected
                losses.append(1 - m / expected)
            }
        } else if let c = b.cornerAtLeastMM, c > 0 {
            // Both corners uncertain: the fit itself is in doubt (the study found middles read
            // 5–7 mm short where a rib's or a shoulder blade's edge was taken for an endplate,
            // and every height short with them), so only the body's own shape may call a
            // fracture, against the least the corners can be; never the middle against the
            // expected height alone.
            b.expectedMM = expected
            losses.append(1 - m / c)
        }
        guard let worst = losses.max(), grade(loss: worst) > 0 else {
            var unread = VertebralBody(name: b.name, unreadable: (b.reason ?? "a corner's height is uncertain")
                                       + "; the heights read show no fracture, and a wedge cannot be excluded without both corners")
            unread.expectedMM = b.expectedMM
            return unread
        }
        b.heightLoss = worst
        b.grade = grade(loss: worst)
        // The type is not told: a corner unread may be the low one (a wedge read as a middle
        // short against the expected height is no crush).
        b.kind = nil
        b.cornerAtLeastMM = nil
        let from = read.isEmpty ? "its middle height against the least its corners can be" : "its \(b.anteriorMM == nil ? "posterior" : "anterior") and middle heights"
        b.reason = (b.reason ?? "") + String(format: "; graded from %@: at least grade %d, its type not told", from, b.grade ?? 0)
        return b
    }

    /// The labels' check: the index (bodies top to bottom, their centres and heights along the
    /// table) at and above which no level may be named, or −1. A body lost (a gap to the next
    /// over `lostGap` times the usual spacing), one too many (a gap under 1/`extraGap` of it:
    /// a piece of bone counted as a body, a body split by a rib across it, a shoulder blade's
    /// part; both bodies beside such a gap are doubted, since either may be the piece) or two
    /// merged (over `LateralImage.mergedHeight` times the bodies' median height) shifts every
    /// label above it. The usual spacing at a gap is the median of the up to four gaps around
    /// it (the whole spine's where fewer): the bodies grow caudally (about 20 mm apart at T4, 35
    /// at L4), and against the spine's median a body lost among the upper thoracic ones (a gap
    /// of 43.6 mm between gaps of 20) looked like one spacing and a half. `anchor`: the body
    /// counted from; those below it are not judged.
    static func unnamedAbove(centres: [Double], heights: [Double], anchor: Int) -> Int {
        let n = min(centres.count, heights.count)
        guard n > 0, anchor >= 0 else { return -1 }
        let gaps = (0..<max(0, n - 1)).map { centres[$0 + 1] - centres[$0] }
        let spacing = Profile.median(gaps), medianHeight = Profile.median(Array(heights.prefix(n)))
        var doubtfulAbove = -1
        for k in 0...min(anchor, n - 1) {
            if heights[k] > LateralImage.mergedHeight * medianHeight { doubtfulAbove = max(doubtfulAbove, k) }
            guard k < anchor, k < gaps.count else { continue }
            let around = (max(0, k - 2)...min(gaps.count - 1, k + 2)).filter { $0 != k }.map { gaps[$0] }
            let usual = around.count >= 2 ? Profile.median(around) : spacing
            guard usual.isFinite, usual > 0 else { continue }
            if gaps[k] > lostGap * usual { doubtfulAbove = max(doubtfulAbove, k) }
            if gaps[k] < usual / extraGap { doubtfulAbove = max(doubtfulAbove, min(k + 1, anchor)) }
        }
        return doubtfulAbove
    }

    /// A gap this many usual spacings wide has lost a body: a body collapsed by half and not
    /// found leaves 1.58 (10 + 4 + 10 + 4 + 10 mm from the centre above it to the centre below,
    /// against 24), one of full height 2; a healthy spine's neighbouring gaps differ by under a
    /// tenth, and a crushed neighbour shortens the gaps around a healthy one to about 0.8.
    static let lostGap = 1.4
    /// A gap under 1/`extraGap` of the usual spacing has a piece too many: the 1.6 of two bodies
    /// merged. Two neighbouring crushes of grade 3 come near it (0.59–0.65) and leave the levels
    /// above them unnamed: safe, not read.
    static let extraGap = 1.6

    /// A robust line through points (median of pairwise slopes, median intercept); nil for
    /// fewer than three points.
    static func theilSen(_ p: [(Double, Double)]) -> (slope: Double, intercept: Double)? {
        guard p.count >= 3 else { return nil }
        var slopes: [Double] = []
        for i in p.indices { for j in p.indices where p[j].0 > p[i].0 { slopes.append((p[j].1 - p[i].1) / (p[j].0 - p[i].0)) } }
        let slope = Profile.median(slopes)
        guard slope.isFinite else { return nil }
        let intercept = Profile.median(p.map { $0.1 - slope * $0.0 })
        return (slope, intercept)
    }

    /// Measures and grades a lateral scan. Throws when no spine can be found in it.
    /// `correction`: the reader's points and grades (`ROICorrection.vfaPoints`, `vfaGrades`),
    /// applied over what the analysis found; the other bodies are graded with them.
    public static func measure(_ scan: DecomposedScan, correction: ROICorrection? = nil) throws(SiteAnalysisError) -> VFAMeasurement {
        // The sizes below (the 5 × 5 opening, the edge search) are set for the protocol's 1 mm
        // pixels: other pixels from 0.5 to 1.5 mm keep them meaningful, others are refused.
        if let why = scan.geometryProblem(pixelMM: 0.5...1.5, minimumChannels: 40, minimumLines: 60) {
            throw SiteAnalysisError("the lateral image cannot be measured: \(why)")
        }
        var image = LateralImage(BoneMap(scan), noise: BoneMap.softTissueNoise(scan))
        var warnings: [AnalysisWarning] = []
        var found = try image.bodies()
        let map = image.map
        // A body split by missing lines is one body: consecutive cut pieces with only missing
        // rows between them count once.
        var joined: [LateralImage.Found] = []
        for f in found {
            if let last = joined.last, last.partial, f.partial {
                let from = map.row(atY: last.point(u: 0, v: last.bottom).y), to = map.row(atY: f.point(u: 0, v: f.top).y)
                // Both ends held inside the image: a cut body's edge point can lie beyond its
                // last row (found by fuzzing, Tests/Fuzz/crashes/analysis: `from` past the last
                // row made the range trap, which in the daemon ends the process).
                let lower = min(map.rows, max(0, from + 1))
                let between = lower..<max(lower, min(map.rows, to))
                if !between.isEmpty, between.allSatisfy({ !map.rowPresent[$0] }) { continue }
            }
            joined.append(f)
        }
        found = joined
        // Count up from the lowest whole body: L4 (the field ends below it by protocol); a
        // cut body below the lowest whole one is L5 and is not read. A scan whose lines stop
        // early has no L4 to count from: then the lowest body with a rib is T12, if a body
        // without one lies below it; otherwise the bodies cannot be named.
        guard let lowest = found.lastIndex(where: { !$0.partial }) else {
            throw SiteAnalysisError("no whole vertebral body in the lateral image")
        }
        // Stopped early: the scan's last lines are missing, below the lowest whole body (a line
        // lost here and there is not a stop).
        let lowestBottom = found[lowest].point(u: 0, v: found[lowest].bottom).y
        let lastLine = map.rowPresent.lastIndex(of: true) ?? 0
        let stoppedEarly = lastLine < map.rows - 1 && (0..<map.rows).contains { map.y($0) > lowestBottom && !map.rowPresent[$0] && $0 > lastLine }
        let ribbed = image.lowestRibbed(found[...lowest])
        let t12 = levels.firstIndex(of: "T12") ?? 8
        let anchor: (index: Int, level: Int)
        if !stoppedEarly {
            anchor = (lowest, levels.count - 1)
            if let ribbed {
                if levels.count - 1 - (lowest - ribbed) != t12 {
                    warnings.append(AnalysisWarning(code: "labels_disagree",
                                                    message: "counted up from L4, the lowest body with a rib is not T12: check the labels"))
                }
            } else {
                warnings.append(AnalysisWarning(code: "labels_unchecked", message: "no rib found: the labels are counted from L4 alone"))
            }
        } else if let ribbed, ribbed < lowest {
            anchor = (ribbed, t12)
            warnings.append(AnalysisWarning(code: "labels_from_ribs", message: "the scan stops above L4: the labels are counted from T12's rib"))
        } else {
            throw SiteAnalysisError("the scan stops above L4 and no rib marks T12: the vertebrae cannot be named")
        }
        let spacing = Profile.median(zip(found, found.dropFirst()).map { $1.centre.y - $0.centre.y })
        let doubtfulAbove = Self.unnamedAbove(centres: found.map(\.centre.y), heights: found.map { $0.bottom - $0.top }, anchor: anchor.index)
        if doubtfulAbove >= 0 {
            warnings.append(AnalysisWarning(code: "labels_uncertain",
                                            message: "a body is missing or two are merged: the levels above it are not named"))
        }
        var named: [String: LateralImage.Found] = [:]
        var uncertain: Set<String> = []
        for (k, f) in zip(found.indices, found) {
            let level = anchor.level - (anchor.index - k)
            guard level >= 0 && level < levels.count else { continue }
            named[levels[level]] = f
            if k <= doubtfulAbove { uncertain.insert(levels[level]) }
        }
        var bodies = levels.map { name -> VertebralBody in
            guard let f = named[name] else { return VertebralBody(name: name, unreadable: "not found in the field") }
            if uncertain.contains(name) { return VertebralBody(name: name, unreadable: "its level is uncertain: a body below it is missing or merged") }
            return image.read(f, name: name)
        }
        // A body the patient moved across is drawn in two places, its front and back stepped
        // where the movement began. Its heights run along the scan, which a movement across the
        // table does not stretch, and the checks above refuse a body whose endplates the step
        // spoils (measured on the simulator: bodies across movements of ±1.5 to ±5 mm read within
        // 1.5 mm or refused; docs/analysis.md); the result names the bodies crossed so that
        // the reader checks their points.
        let crossed = bodies.filter { b in
            guard b.readable, let top = b.points.map({ $0[1] }).min(), let bottom = b.points.map({ $0[1] }).max() else { return false }
            return scan.motion.contains { m in
                let y = scan.geometry.y(row: m.line)
                return y >= top - Self.motionMarginMM && y <= bottom + Self.motionMarginMM
            }
        }.map(\.name)
        if let w = AnalysisWarning.moved(scan, across: crossed, read: true) { warnings.append(w) }
        // The reader's points replace the found ones before grading (a body placed by hand
        // counts towards the expected height like any other); the reader's grades after it.
        let xRange = min(map.x(0), map.x(map.columns - 1))...max(map.x(0), map.x(map.columns - 1))
        let yRange = min(map.y(0), map.y(map.rows - 1))...max(map.y(0), map.y(map.rows - 1))
        for (name, points) in (correction?.vfaPoints ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let i = bodies.firstIndex(where: { $0.name == name }) else { throw SiteAnalysisError("\(name) is not one of T4–L4") }
            if let why = ROICorrection.pointsProblem(points) { throw SiteAnalysisError("\(name): \(why)") }
            for p in points {
                guard xRange.contains(p[0]), yRange.contains(p[1]) else {
                    throw SiteAnalysisError(String(format: "%@'s point at x %.1f, y %.1f mm lies outside the lateral image", name, p[0], p[1]))
                }
            }
            bodies[i] = VertebralBody(placed: points, name: name)
            // Points placed on the body the analysis named otherwise: the reader's label and
            // the analysis's disagree (a mislabel either way). Said, not refused: without a
            // relabel the reader may know better (docs/analysis.md).
            let centroid = (x: points.map { $0[0] }.reduce(0, +) / 6, y: points.map { $0[1] }.reduce(0, +) / 6)
            func distance(_ f: LateralImage.Found) -> Double { hypot(f.centre.x - centroid.x, f.centre.y - centroid.y) }
            if let nearest = named.min(by: { distance($0.value) < distance($1.value) }), nearest.key != name,
               distance(nearest.value) < 0.5 * spacing {
                warnings.append(AnalysisWarning(code: "points_on_another_body",
                                                message: String(format: "%@'s points lie on the body the analysis labelled %@ (%.0f mm from its centre): check the labels", name, nearest.key, distance(nearest.value))))
            }
        }
        bodies = grade(bodies)
        for (name, set) in (correction?.vfaGrades ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let i = bodies.firstIndex(where: { $0.name == name }) else { throw SiteAnalysisError("\(name) is not one of T4–L4") }
            var b = bodies[i]
            b.measuredGrade = b.readable ? b.grade : nil
            // A body the analysis could not read can still be graded by eye (Genant's method is
            // visual); its heights stay unmeasured.
            b.readable = true
            b.reason = nil
            b.grade = set.grade
            b.kind = set.grade > 0 ? set.type : nil
            b.gradeBy = "reader"
            bodies[i] = b
        }
        let unreadable = bodies.filter { !$0.readable }.count
        if unreadable > 0 {
            warnings.append(AnalysisWarning(code: "vertebrae_unreadable", message: "\(unreadable) of T4–L4 could not be read",
                                            value: Double(unreadable)))
        }
        if scan.rowPresent.contains(false) {
            warnings.append(AnalysisWarning(code: "scan_incomplete", message: "lines of the lateral scan are missing"))
        }
        return VFAMeasurement(vertebrae: bodies, warnings: warnings)
    }
}

/// The working state of a lateral image's measurement: the bone image smoothed over 3 × 3
/// pixels and the bodies' level.
struct LateralImage {
    let map: BoneMap
    /// One pixel's noise (g/cm², σ).
    let noise: Double
    /// The noise of the smoothed image (a 3 × 3 mean: σ/3).
    var smoothNoise: Double { noise / 3 }
    /// The noise of an endplate profile's sample: three bilinear samples across, one pixel
    /// apart, of the 3 × 3 mean, i.e. 3 rows × 5 columns weighted 1, 2, 3, 2, 1 (/27 each):
    /// σ √(19/243) = 0.28 σ.
    var profileNoise: Double { noise * (19.0 / 243.0).squareRoot() }
    /// Bone mineral, each pixel the mean of its 3 × 3 neighbourhood (NaN with fewer than 5),
    /// less the background of bone larger than any body (`background`).
    let smooth: [Double]
    /// The bone under the bodies that is larger than any of them: a shoulder blade's plate,
    /// the pelvis. The opening of the smoothed image by a rectangle of `backgroundSizeMM` (a
    /// rectangle taller than the tallest body always takes in a disc beside it, so the bodies
    /// do not fit; a plate does), and never below 0 (over soft tissue alone the opening of the
    /// noise is a little under 0, which is no bone). The bodies are found and read on what
    /// stands above it: a blade of 0.1–0.3 g/cm² over the upper thoracic bodies no longer joins
    /// them at half their level, and its border across a body is no step (the white top-hat;
    /// Soille, *Morphological Image Analysis*, 2nd ed., §4.4). Ribs and discs, narrower than
    /// the rectangle, are not in it.
    let background: [Double]
    /// The rectangle of the background's opening (mm, across × along the scan): taller than
    /// an L4 of a large adult (27 mm × 1.15), and as wide.
    static let backgroundSizeMM = (across: 40.0, along: 40.0)
    /// A body's level: the 95th percentile of the image.
    var level = 0.0

    init(_ map: BoneMap, noise: Double) {
        self.map = map
        self.noise = noise.isFinite ? noise : 0.02
        let mean = map.neighbourhoodMean()
        // In pixels, held to the image's size (a header from elsewhere may claim any pitch).
        func half(_ mm: Double, _ pitch: Double, _ limit: Int) -> Int? {
            let h = mm / abs(pitch) / 2
            return h.isFinite ? Int(min(h, Double(limit)).rounded()) : nil
        }
        let opened = half(Self.backgroundSizeMM.across, map.dx, map.columns).flatMap { w in
            half(Self.backgroundSizeMM.along, map.dy, map.rows).map { h in
                Morphology.opening(mean, columns: map.columns, rows: map.rows, halfWidth: w, halfHeight: h)
            }
        } ?? [Double](repeating: 0, count: mean.count)
        background = opened.map { $0.isFinite ? max(0, $0) : 0 }
        smooth = zip(mean, background).map { $0 - $1 }
    }

    func at(_ r: Int, _ c: Int) -> Double {
        guard r >= 0, r < map.rows, c >= 0, c < map.columns else { return .nan }
        return smooth[r * map.columns + c]
    }

    /// The smoothed image at a table point, bilinear.
    func at(x: Double, y: Double) -> Double {
        let fc = (x - map.x0) / map.dx, fr = (y - map.y0) / map.dy
        guard fc.isFinite, fr.isFinite, fc > -1, fr > -1, fc < Double(map.columns), fr < Double(map.rows) else { return .nan }
        let c = Int(fc.rounded(.down)), r = Int(fr.rounded(.down))
        let tc = fc - Double(c), tr = fr - Double(r)
        let a = at(r, c), b = at(r, c + 1), d = at(r + 1, c), e = at(r + 1, c + 1)
        guard a.isFinite, b.isFinite, d.isFinite, e.isFinite else { return .nan }
        return (a * (1 - tc) + b * tc) * (1 - tr) + (d * (1 - tc) + e * tc) * tr
    }

    /// A body found in the image: its centre, the direction of its depth (posterior to
    /// anterior; its height runs square to it, down the table), its extent in that frame
    /// (u across, v along the body's axis), whether the field or a missing line cuts it.
    struct Found {
        var centre: (x: Double, y: Double)
        /// The axis's angle; its cosine and sine kept with it (`point` is called for every
        /// sample of every profile: the analysis's cost was a third trigonometry).
        var angle: Double { didSet { cosine = cos(angle); sine = sin(angle) } }
        private(set) var cosine: Double
        private(set) var sine: Double
        var back: Double, front: Double
        var top: Double, bottom: Double
        var partial: Bool
        /// The share of its frame's rectangle its pixels fill: a body's outline fills most of
        /// it, a body merged with a rib or an artefact much less.
        var fill = 1.0
        /// Found only above half the level: at half of it, it was joined to bone around it
        /// (a shoulder blade, ribs), which then lies over its edges. It does not steer the
        /// spine's line (`bodies`); it is read like any body, whose own tests (endplates found
        /// on most lines, a disc beyond each, its fill, its heights' errors) say whether its
        /// edges could be traced (until 2026-12-07 every joined body was unreadable).
        var joined = false

        init(centre: (x: Double, y: Double), angle: Double, back: Double, front: Double, top: Double, bottom: Double, partial: Bool) {
            self.centre = centre; self.angle = angle; cosine = cos(angle); sine = sin(angle)
            self.back = back; self.front = front; self.top = top; self.bottom = bottom; self.partial = partial
        }

        /// Table point of body coordinates (u across, v along the axis).
        func point(u: Double, v: Double) -> (x: Double, y: Double) {
            (centre.x + u * cosine - v * sine, centre.y + u * sine + v * cosine)
        }
    }

    /// The bodies from top to bottom: the connected parts of the image above half a body's
    /// level (a disc, and a rib over it, stay below), as wide and as tall as a body, in a
    /// chain down the image.
    mutating func bodies() throws(SiteAnalysisError) -> [Found] {
        let rows = map.rows, columns = map.columns
        let values = smooth.filter(\.isFinite).sorted()
        guard values.count > rows * columns / 4 else { throw SiteAnalysisError("the lateral image has too few measured pixels") }
        level = values[min(values.count - 1, Int(0.95 * Double(values.count)))]
        // The bodies' level must stand five of the smoothed image's SDs clear of nothing (the
        // 95th percentile of noise alone is 1.6 of them).
        guard level > max(0.15, 5 * smoothNoise) else { throw SiteAnalysisError("no vertebral bodies in the lateral image") }
        // Opened by a 5 × 5 square (eroded, then dilated): a rib's fragments over the level,
        // and a rib's end touching a body's corner, fall away; a body (8 mm tall even when
        // crushed) stays.
        func all(_ m: Mask, _ r: Int, _ c: Int) -> Bool {
            for rr in (r - 2)...(r + 2) { for cc in (c - 2)...(c + 2) {
                guard rr >= 0, rr < rows, cc >= 0, cc < columns, m.bits[rr * columns + cc] else { return false }
            } }
            return true
        }
        func any(_ m: Mask, _ r: Int, _ c: Int) -> Bool {
            for rr in max(0, r - 2)...min(rows - 1, r + 2) { for cc in max(0, c - 2)...min(columns - 1, c + 2) where m.bits[rr * columns + cc] { return true } }
            return false
        }
        func opened(_ within: Mask?, threshold: Double) -> Mask {
            let raw = Mask(columns: columns, rows: rows) { r, c in (within?.bits[r * columns + c] ?? true) && at(r, c) >= threshold }
            let eroded = Mask(columns: columns, rows: rows) { r, c in all(raw, r, c) }
            return Mask(columns: columns, rows: rows) { r, c in raw.bits[r * columns + c] && any(eroded, r, c) }
        }
        let minimum = max(10, Int(60 / (map.dx * map.dy)))
        var found: [Found] = []
        // Half the level first. A part too large for a body (bodies joined by a shoulder
        // blade or ribs laid over them and the discs between) is thresholded again within
        // itself at 0.6, then 0.7 of the level: the bodies stand that much above what joins
        // them (a plate of 0.1–0.3 g/cm² under bodies of 0.7–1.2).
        typealias Pixels = [(row: Int, column: Int)]
        /// Within `component`, the parts standing above `fraction` of the level.
        func thresholdAgain(_ component: Pixels, at fraction: Double) -> [Pixels] {
            var bits = [Bool](repeating: false, count: rows * columns)
            for p in component { bits[p.row * columns + p.column] = true }
            let region = Mask(columns: columns, rows: rows) { r, c in bits[r * columns + c] }
            return opened(region, threshold: level * fraction).components(minimum: minimum)
        }
        /// A part's frame: nil for one too small for a body, `tooLarge` for one over 60 mm.
        func frame(_ component: Pixels, fraction: Double) -> (found: Found?, tooLarge: Bool) {
            // Its centre and principal directions (moments of the pixels' positions).
            let n = Double(component.count)
            let xs = component.map { map.x($0.column) }, ys = component.map { map.y($0.row) }
            let cx = xs.reduce(0, +) / n, cy = ys.reduce(0, +) / n
            var sxx = 0.0, syy = 0.0, sxy = 0.0
            for (x, y) in zip(xs, ys) { sxx += (x - cx) * (x - cx); syy += (y - cy) * (y - cy); sxy += (x - cx) * (y - cy) }
            // The depth runs along the larger axis when the body is deeper than tall (every
            // vertebral body seen from the side); the angle of that axis to x.
            var angle = 0.5 * atan2(2 * sxy, sxx - syy)
            if abs(angle) > .pi / 4 { angle += angle > 0 ? -.pi / 2 : .pi / 2 }
            var f = Found(centre: (cx, cy), angle: angle, back: .infinity, front: -.infinity, top: .infinity, bottom: -.infinity, partial: false)
            for (x, y) in zip(xs, ys) {
                let dx = x - cx, dy = y - cy
                let u = dx * f.cosine + dy * f.sine, v = -dx * f.sine + dy * f.cosine
                f.back = min(f.back, u); f.front = max(f.front, u); f.top = min(f.top, v); f.bottom = max(f.bottom, v)
            }
            let depth = f.front - f.back, height = f.bottom - f.top
            if depth > 60 || height > 60 { return (nil, true) }
            guard depth >= 12, height >= 5 else { return (nil, false) }
            f.fill = n * map.dx * map.dy / ((depth + map.dx) * (height + map.dy))
            f.joined = fraction > 0.5
            let rowSpan = component.map(\.row)
            let r0 = rowSpan.min() ?? 0, r1 = rowSpan.max() ?? 0
            f.partial = r0 == 0 || r1 == rows - 1 || (max(0, r0 - 2)...min(rows - 1, r1 + 2)).contains { !map.rowPresent[$0] }
                || component.contains { $0.column == 0 || $0.column == columns - 1 }
            return (f, false)
        }
        // Half the level first; a part over 60 mm again within itself at 0.6, then 0.7.
        var pending: [(pixels: Pixels, fraction: Double)] = opened(nil, threshold: level / 2).components(minimum: minimum).map { ($0, 0.5) }
        var parts: [(found: Found, pixels: Pixels, fraction: Double)] = []
        while let (component, fraction) = pending.popLast() {
            let (f, tooLarge) = frame(component, fraction: fraction)
            if tooLarge, fraction < 0.65 { pending += thresholdAgain(component, at: fraction + 0.1).map { ($0, fraction + 0.1) } }
            if let f { parts.append((f, component, fraction)) }
        }
        // A part over `mergedHeight` times the median height of the bodies that stood apart at
        // half the level (whole ones) is two bodies joined (a rib or the shoulder blade's border
        // across the disc between them): it is thresholded again within itself, once, and
        // replaced by its pieces only when they are exactly two bodies by size (pieces further
        // across than `chainToleranceMM` from the pieces' median are left out, as the chain
        // below would), neighbours along the spine with no body's room between or beyond them
        // (below), each then `joined`. Otherwise it stays as it was, and the labels
        // above it stay uncertain. A split into one body and a fragment would leave one body
        // where there are two, and a third piece one too many: either would move every label
        // above by one, unseen (the outside review of 2026-12-06).
        let apart = parts.filter { $0.fraction == 0.5 && !$0.found.partial }.map { $0.found.bottom - $0.found.top }
        let median = Profile.median(apart)
        if apart.count >= 3, median.isFinite, median > 0 {
            parts = parts.flatMap { part -> [(found: Found, pixels: Pixels, fraction: Double)] in
                let height = part.found.bottom - part.found.top
                guard height > Self.mergedHeight * median, !part.found.partial, part.fraction < 0.65 else { return [part] }
                let fraction = part.fraction + 0.1
                let all = thresholdAgain(part.pixels, at: fraction).compactMap { piece in
                    frame(piece, fraction: fraction).found.map { (found: $0, pixels: piece, fraction: fraction) }
                }
                // Pieces off the spine's line (a rib's scrap in front of the bodies) are no bodies.
                let across = Profile.median(all.map(\.found.centre.x))
                let pieces = all.filter { abs($0.found.centre.x - across) <= Self.chainToleranceMM }.sorted { $0.found.centre.y < $1.found.centre.y }
                guard pieces.count == 2 else { return [part] }
                let (a, b) = (pieces[0].found, pieces[1].found)
                // Neighbours: one above the other, no body's room between them (centres 0.5–1.8
                // median heights apart; two spacings are about 2.5), and no body's room left in
                // the part beyond them (their span from the upper's top to the lower's bottom
                // short of the part's height by under 0.8 of a median height).
                let dy = b.centre.y - a.centre.y
                let neighbours = dy >= 0.5 * median && dy <= 1.8 * median && abs(b.centre.x - a.centre.x) <= Self.chainToleranceMM
                let span = dy + (a.bottom - a.top) / 2 + (b.bottom - b.top) / 2
                return neighbours && span >= height - 0.8 * median ? pieces : [part]
            }
        }
        found = parts.map(\.found)
        found.sort { $0.centre.y < $1.centre.y }
        // The chain: bodies whose centre lies within 25 mm across of the running median of
        // their neighbours' (a necklace or a piercing beside the spine is not a body).
        let centres = found.map(\.centre.x)
        found = found.indices.filter { i in
            let around = (max(0, i - 3)...min(found.count - 1, i + 3)).map { centres[$0] }
            return abs(centres[i] - Profile.median(around)) <= 25
        }.map { found[$0] }
        // And every body must lie on the spine where the bodies that stood apart at half the
        // level put it: within `chainToleranceMM` across of the straight line through the four
        // of them nearest along the scan, itself left out (a local line follows the spine's S,
        // kyphosis above lordosis, where one curve through them all would not, and bodies
        // joined to a shoulder blade do not steer it). Where the blade joined the real upper
        // bodies, the running median above had only strips between ribs over the blade to go
        // by, and such a strip was read as T4 or T5 with every height half the truth
        // (docs/analysis.md).
        let clear = found.filter { !$0.joined }
        if clear.count >= 5 {
            found = found.filter { f in
                let nearest = clear.filter { $0.centre != f.centre }.sorted { abs($0.centre.y - f.centre.y) < abs($1.centre.y - f.centre.y) }.prefix(4)
                guard let line = Self.line(nearest.map(\.centre.y), nearest.map(\.centre.x)) else { return true }
                // And as deep as a body: at least `minimumDepthShare` of the median depth of the
                // same four. A fracture takes height, not depth; a piece of a rib or of the
                // blade's border between the ribs, 12–18 mm deep beside bodies of 30–37, counted
                // as a body, left every label above it uncertain (seeds 2, 12, 13 and 28 of the
                // full side view, 2026-12-07). (Where fewer than five bodies stand clear, neither
                // this nor the line is checked.)
                let deepEnough = f.front - f.back >= Self.minimumDepthShare * Profile.median(nearest.map { $0.front - $0.back })
                return deepEnough && abs(f.centre.x - (line.intercept + line.slope * f.centre.y)) <= Self.chainToleranceMM
            }
        }
        guard found.count >= 2 else { throw SiteAnalysisError("fewer than two vertebral bodies in the lateral image") }
        return found
    }

    /// The lowest of `found` with a rib behind its upper posterior corner: in the window 12–40
    /// mm behind the body and up to 25 mm above its top (in the body's frame), a band of bone
    /// standing out of the window's own background (its 90th percentile over its 25th).
    func lowestRibbed(_ found: ArraySlice<Found>) -> Int? {
        let floor = max(0.08, 5 * smoothNoise)
        var lowest: Int?
        for (k, f) in zip(found.indices, found) where !f.partial {
            var window: [Double] = []
            var u = f.back - 40
            while u <= f.back - 12 {
                var v = f.top - 25
                while v <= f.top {
                    let p = f.point(u: u, v: v)
                    let s = at(x: p.x, y: p.y)
                    if s.isFinite { window.append(s) }
                    v += map.dy
                }
                u += map.dx
            }
            guard window.count >= 20 else { continue }
            window.sort()
            if window[window.count * 9 / 10] - window[window.count / 4] > floor { lowest = k }
        }
        return lowest
    }

    /// A found body measured: its endplates along lines down its axis, fitted, the six points;
    /// then measured again square to the endplates found, once, when they lean more than 1°.
    func read(_ f: Found, name: String) -> VertebralBody {
        if f.partial { return VertebralBody(name: name, unreadable: "cut by the edge of the field or a missing line") }
        if f.fill < Self.minimumFill {
            return VertebralBody(name: name, unreadable: String(format: "its outline is not a body's (it fills %.0f %% of its box: a rib or an artefact joins it)", f.fill * 100))
        }
        // Metal or a dense artefact over it.
        for r in 0..<map.rows {
            for c in 0..<map.columns where map.opaque[r * map.columns + c] {
                let dx = map.x(c) - f.centre.x, dy = map.y(r) - f.centre.y
                let u = dx * f.cosine + dy * f.sine, v = -dx * f.sine + dy * f.cosine
                if u >= f.back - 2, u <= f.front + 2, v >= f.top - 2, v <= f.bottom + 2 {
                    return VertebralBody(name: name, unreadable: "metal or a dense artefact over the body")
                }
            }
        }
        var frame = sides(f)
        var result = endplates(frame, name: name)
        // The frame turned by the endplates' lean until they lie square to it (a body whose
        // endplates lean the other way each time, or still lean after three turns, has no axis
        // to measure along).
        var turns = 0
        while let lean = result.lean, abs(lean) > .pi / 180, turns < 3 {
            frame.angle += lean
            result = endplates(frame, name: name)
            turns += 1
        }
        if let again = result.lean, abs(again) > 2 * .pi / 180 {
            return VertebralBody(name: name, unreadable: String(format: "its endplates do not settle square to one axis (%.1f° off)", again * 180 / .pi))
        }
        return result.body
    }

    /// The body's posterior and anterior edges found as its endplates are (below), on lines
    /// across its middle half: where the bone crosses half-way between its level just inside
    /// and just outside, for a step of at least 40 % of the body's own level (a rib or a
    /// shoulder blade joined to the outline steps down by less), the crossing nearest the
    /// outline's edge within 12 mm of it. The outline alone takes in what is joined to the
    /// body; the heights are read at these edges. Unchanged where fewer than three lines agree.
    func sides(_ f: Found) -> Found {
        let step = 0.5 * min(map.dx, map.dy)
        let height = f.bottom - f.top, vMid = (f.top + f.bottom) / 2
        let across = (-map.dy, 0.0, map.dy)
        func profile(_ u: Double, _ v: Double) -> Double {
            var s = 0.0, n = 0
            func add(_ dv: Double) {
                let p = f.point(u: u, v: v + dv)
                let x = at(x: p.x, y: p.y)
                if x.isFinite { s += x; n += 1 }
            }
            add(across.0); add(across.1); add(across.2)
            return n > 0 ? s / Double(n) : .nan
        }
        // The body's own level: the median along its middle line, over its middle half.
        let body = Profile.median(stride(from: f.back + 0.25 * (f.front - f.back), through: f.front - 0.25 * (f.front - f.back), by: map.dx)
            .map { profile($0, vMid) }.filter(\.isFinite))
        guard body.isFinite, body > 0 else { return f }
        func edge(_ v: Double, near u0: Double, inward: Double) -> Double? {
            Self.halfwayCrossing({ profile($0, v) }, near: u0, inward: inward, step: step, reach: 24, minimumStep: max(0.4 * body, 5 * profileNoise))
        }
        var backs: [Double] = [], fronts: [Double] = []
        for v in stride(from: vMid - 0.25 * height, through: vMid + 0.25 * height, by: map.dy) {
            if let b = edge(v, near: f.back, inward: 1) { backs.append(b) }
            if let a = edge(v, near: f.front, inward: -1) { fronts.append(a) }
        }
        var g = f
        if backs.count >= 3 { g.back = Profile.median(backs) }
        if fronts.count >= 3 { g.front = Profile.median(fronts) }
        return g.front - g.back >= 12 ? g : f
    }

    /// Where `sample` (a profile along a line) crosses half-way between its level just inside
    /// (the median of 1.5–4 steps in) and just outside (the least of 0.5–3 steps out), to a
    /// fraction of a step: the candidate within `reach` steps of `t0` nearest to it, where the
    /// step between the two levels exceeds `minimumStep` (so that a rib laid over the edge, or
    /// over the disc beside it, moves both levels and not the crossing).
    static func halfwayCrossing(_ sample: (Double) -> Double, near t0: Double, inward: Double, step: Double, reach: Int,
                                minimumStep: Double) -> Double? {
        var best: Double?
        for k in -reach...reach {
            let ta = t0 + Double(k) * step, tb = ta + inward * step
            let inside = Profile.median((3...8).map { sample(ta + inward * Double($0) * step) })
            let outside = (2...7).map { sample(ta - inward * Double($0 - 1) * step) }.filter(\.isFinite).min() ?? .nan
            guard inside.isFinite, outside.isFinite, inside - outside > minimumStep else { continue }
            let halfway = (inside + outside) / 2
            let a = sample(ta), b = sample(tb)
            guard a.isFinite, b.isFinite, a < halfway, b >= halfway else { continue }
            let t = ta + inward * step * (halfway - a) / (b - a)
            if best == nil || abs(t - t0) < abs((best ?? 0) - t0) { best = t }
        }
        return best
    }

    /// How close to a body's posterior and anterior edges its endplates are sampled (mm): the
    /// reach of the 3 × 3 mean and of the profile's neighbours, so that the corners' heights
    /// are read where the endplates were seen, not extrapolated over a tenth of the depth
    /// (where a rib's bias on a few samples bends the fitted curve by a millimetre or two).
    static let edgeMarginMM = 2.0

    /// Least squares y = intercept + slope·x; nil for fewer than two distinct x.
    static func line(_ x: [Double], _ y: [Double]) -> (slope: Double, intercept: Double)? {
        guard x.count == y.count, x.count >= 2 else { return nil }
        let n = Double(x.count), mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        let sxx = x.reduce(0) { $0 + ($1 - mx) * ($1 - mx) }
        guard sxx > 1e-9 else { return nil }
        let slope = zip(x, y).reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) } / sxx
        return (slope, my - slope * mx)
    }

    /// The least depth of a body against the bodies nearest it along the spine. In the scenes
    /// the depth grows from about 25 mm at T4 to 35 at L4, so a body four levels from the
    /// nearest clear ones is 0.8 of their depth; measured over the 50 patients with bodies and
    /// ribs (every part a body), the least was 0.85. The pieces of ribs and of the blade's
    /// border on the full side view (6–11 mm tall) lay at 0.34–0.61, with a few at 0.68–0.78,
    /// most of those at the top of the field. 0.7: a tenth under the anatomy's 0.8.
    static let minimumDepthShare = 0.7

    /// How far across from the spine's local line a body's centre may lie (mm): about half a
    /// thoracic body's depth (about 25 mm at T4 to 31 at T8 in the scenes), so that a centre
    /// beyond it lies outside the column of bodies.
    static let chainToleranceMM = 20.0

    /// A part found at half the level over this many times the bodies' median height is two
    /// bodies joined: the same 1.6 the labels take as "two merged".
    static let mergedHeight = 1.6

    /// The levels whose posterior corners hold a rib's head over the disc (ribs 2–10).
    static let ribHeadLevels: Set<String> = Set((4...10).map { "T\($0)" })

    /// The least share of its box a body's outline fills: a body with concave endplates or a
    /// grade 3 wedge still fills three quarters of it.
    static let minimumFill = 0.55

    /// The largest standard error of a height that is graded (mm): half the 1.5 mm heights are
    /// held to, so that 95 % of the graded land within it.
    static let heightStandardError = 0.75

    /// The endplate samples are one pixel apart and each line's profile spans five columns
    /// (weights 1, 2, 3, 2, 1): neighbouring lines' noise is correlated by 16/19, 10/19, 4/19
    /// and 1/19 at lags 1–4, so a fit's standard error under independence is too small by
    /// √(1 + 2 Σρ) = √(1 + 2 × 31/19) = 2.06 (the variance of a mean of correlated samples).
    static let lineCorrelation = (1 + 2 * 31.0 / 19).squareRoot()

    /// The endplates in a body's frame, and how far they lean in it (radians).
    func endplates(_ f: Found, name: String) -> (body: VertebralBody, lean: Double?) {
        let depth = f.front - f.back
        // Lines down the body's axis to within `edgeMarginMM` of its edges, one per pixel, from the
        // middle outwards: each endplate where the line's bone (its neighbours' mean across)
        // crosses half-way between its level just inside the body and just outside it (so that
        // a rib laid over the edge, or over the disc beside it, moves both levels and not the
        // crossing), to a fraction of a step, searched near the neighbouring line's.
        let step = 0.5 * min(map.dx, map.dy)
        let across = (-map.dx, 0.0, map.dx)
        func profile(_ u: Double, _ v: Double) -> Double {
            var s = 0.0, n = 0
            func add(_ du: Double) {
                let p = f.point(u: u + du, v: v)
                let x = at(x: p.x, y: p.y)
                if x.isFinite { s += x; n += 1 }
            }
            add(across.0); add(across.1); add(across.2)
            return n > 0 ? s / Double(n) : .nan
        }
        func edge(_ u: Double, near v0: Double, inward: Double, reach: Int) -> Double? {
            // The step must be five of a profile sample's SDs (the inside level, a median of
            // six, and the outside one, a least of six, each carry about one).
            Self.halfwayCrossing({ profile(u, $0) }, near: v0, inward: inward, step: step, reach: reach, minimumStep: max(0.1, 5 * profileNoise))
        }
        var samples: [(u: Double, top: Double, bottom: Double)] = []
        let mid = (f.back + f.front) / 2
        let margin = max(Self.edgeMarginMM, 0.05 * depth)
        for direction in [-1.0, 1.0] {
            var top = f.top, bottom = f.bottom
            var reach = 12
            var u = direction < 0 ? mid : mid + map.dx
            while u >= f.back + margin && u <= f.front - margin {
                if let t = edge(u, near: top, inward: 1, reach: reach), let b = edge(u, near: bottom, inward: -1, reach: reach), b - t > 4 {
                    samples.append(((u - mid) / depth, t, b))
                    top = t; bottom = b; reach = 6
                }
                u += direction * map.dx
            }
        }
        let us = samples.map(\.u), tops = samples.map(\.top), bottoms = samples.map(\.bottom)
        // Most lines must find both endplates, towards both ends of the body (its corners'
        // heights are read from the curve there): where they do not, something lies over them.
        let lines = Int((depth - 2 * margin) / map.dx)
        if Double(samples.count) < 0.6 * Double(max(lines, 1)) {
            return (VertebralBody(name: name, unreadable: "its endplates were found on \(samples.count) of \(lines) lines"), nil)
        }
        for (end, side) in [(us.filter { $0 < -0.25 }.count, "back"), (us.filter { $0 > 0.25 }.count, "front")] where end < 3 {
            return (VertebralBody(name: name, unreadable: "its endplates were not found towards its \(side) (a rib or an artefact over them)"), nil)
        }
        guard us.count >= 6, let upper = Quadratic.robustFit(us, tops), let lower = Quadratic.robustFit(us, bottoms) else {
            return (VertebralBody(name: name, unreadable: "its endplates were not found"), nil)
        }
        if max(upper.rms, lower.rms) > 1.5 {
            return (VertebralBody(name: name, unreadable: String(format: "its endplates are not clear (%.1f mm off a smooth line)", max(upper.rms, lower.rms))), nil)
        }
        func height(_ w: Double) -> Double { lower.value(at: w) - upper.value(at: w) }
        // Beyond a true endplate lies the disc, below the bodies' threshold (half their level)
        // even with a rib over it; beyond a rib's edge taken for an endplate lies the rest of
        // the body. Looked at 1.5–3 mm past each endplate at five places from end to end. At
        // the posterior corner (5 % of the depth from the back) of T4–T10 a rib's head lies
        // over the disc: ribs 2–9 articulate across the disc with demifacets on the upper and
        // lower posterior corners of the two bodies, rib 10 at T10's upper border (the
        // costovertebral joints: Standring (ed.), Gray's Anatomy, 42nd ed., 2020, chapter
        // "Chest wall and breast"). There bone beyond a true endplate is the rule, not a sign
        // of a wrong edge; a wrong edge there still shows at 20 % of the depth from the back.
        // At T11–L4 the corner is checked like the rest. (The rib can lengthen the posterior
        // height by 2–3 mm, a known source of false biconcave grade 1: docs/analysis.md.)
        let ribHeads = Self.ribHeadLevels.contains(name)
        for (curve, outward, which) in [(upper, -1.0, "upper"), (lower, 1.0, "lower")] {
            for (w, part) in [(-0.45, "back"), (-0.3, "back"), (0.0, "middle"), (0.3, "front"), (0.45, "front")] {
                // The disc's trough (the least 0.5–2 mm past the endplate: a crushed body's disc
                // can be 2–3 mm across before the next body rises) against the body's own bone
                // 1.5–3 mm inside: a true endplate steps down to under half the bodies' level, or,
                // where a rib and a shoulder blade's remnant lie over the disc, by at least 40 %
                // of it (a rib's edge steps down by a rib, 0.2–0.4 of it). No further than 2 mm:
                // a rib's edge further inside than that finds the body beyond it, not the disc,
                // and is refused; one within 2 mm is within the heights' tolerance. Where neither
                // can be seen (no number there: metal, saturation), the endplate is not shown to
                // be one: refused.
                let inside = Profile.median(stride(from: 1.5, through: 3.0, by: 0.5).map { profile(mid + w * depth, curve.value(at: w) - outward * $0) })
                let trough = stride(from: 0.5, through: 2.0, by: 0.5).map { profile(mid + w * depth, curve.value(at: w) + outward * $0) }.filter(\.isFinite).min() ?? .nan
                if w == -0.45 && ribHeads { continue }
                guard trough.isFinite, inside.isFinite else {
                    return (VertebralBody(name: name, unreadable: "its \(which) endplate at its \(part) has no image beside it to show the disc (metal or a pixel without a number)"), nil)
                }
                if trough < level / 2 || inside - trough >= 0.4 * level { continue }
                return (VertebralBody(name: name, unreadable: "its \(which) endplate found at its \(part) has bone beyond it (a rib's edge taken for the endplate)"), nil)
            }
        }
        // Each height's standard error from the two fits: one over half the 1.5 mm the
        // heights are held to (so that 95 % of them land within it) cannot be graded.
        // A corner's height uncertain (a rib over that corner's endplate) leaves the others
        // read: the body is graded only if they already show a fracture (`grade`,
        // `gradeWithoutCorner`). The middle uncertain: unreadable.
        var uncertainCorners: [(side: String, se: Double)] = []
        for (w, side) in [(-0.5, "posterior"), (0.0, "middle"), (0.5, "anterior")] {
            let se = Self.lineCorrelation * (pow(upper.standardError(at: w), 2) + pow(lower.standardError(at: w), 2)).squareRoot()
            if !(se <= Self.heightStandardError) {
                if side != "middle", se.isFinite {
                    uncertainCorners.append((side, se))
                    continue
                }
                return (VertebralBody(name: name, unreadable: String(format: "its %@ height is uncertain (± %.1f mm: the endplates there are unclear)", side, se)), nil)
            }
        }
        var points: [[Double]] = []
        for curve in [upper, lower] {
            for w in [-0.5, 0.0, 0.5] {
                let p = f.point(u: mid + w * depth, v: curve.value(at: w))
                points.append([p.x, p.y])
            }
        }
        let lean = atan((upper.slope(at: 0) + lower.slope(at: 0)) / 2 / depth)
        var body = VertebralBody(name: name, anteriorMM: height(0.5), middleMM: height(0), posteriorMM: height(-0.5), points: points,
                                 tiltDegrees: (f.angle + lean) * 180 / .pi)
        if !uncertainCorners.isEmpty {
            for corner in uncertainCorners {
                if corner.side == "posterior" { body.posteriorMM = nil } else { body.anteriorMM = nil }
            }
            body.uncertainHeight = uncertainCorners.map(\.side).sorted().joined(separator: "_")
            if uncertainCorners.count == 2 {
                body.cornerAtLeastMM = uncertainCorners.map { height($0.side == "posterior" ? -0.5 : 0.5) - 2 * $0.se }.max()
            }
            body.reason = "its " + uncertainCorners.map { String(format: "%@ height (± %.1f mm)", $0.side, $0.se) }.joined(separator: " and ")
                + (uncertainCorners.count > 1 ? " are" : " is") + " uncertain: the endplates there are unclear"
        }
        return (body, lean)
    }
}

/// y = a + b u + c u², least squares, with its RMS residual and the inverse of its normal
/// matrix (for the standard error of a value it gives).
struct Quadratic {
    var a: Double, b: Double, c: Double
    var rms: Double
    /// (XᵀX)⁻¹ of the design [1, u, u²], row-major 3 × 3.
    var inverse: [Double] = []
    /// The number of samples fitted.
    var count = 0

    func value(at u: Double) -> Double { a + b * u + c * u * u }
    func slope(at u: Double) -> Double { b + 2 * c * u }

    /// The standard error of `value(at:)`: s √(x₀ᵀ (XᵀX)⁻¹ x₀), s the residuals' SD on n − 3
    /// degrees of freedom (the usual prediction of the mean; Draper & Smith, Applied
    /// Regression Analysis, ch. 5). Infinite when it cannot be told.
    func standardError(at u: Double) -> Double {
        guard inverse.count == 9, count > 3 else { return .infinity }
        let x = [1, u, u * u]
        var q = 0.0
        for i in 0..<3 { for j in 0..<3 { q += x[i] * inverse[i * 3 + j] * x[j] } }
        let s = rms * (Double(count) / Double(count - 3)).squareRoot()
        return s * max(0, q).squareRoot()
    }

    /// A fit, then again without the samples more than max(1 mm, 3 RMS) off it (a rib's edge
    /// taken for the endplate's).
    static func robustFit(_ u: [Double], _ y: [Double]) -> Quadratic? {
        guard let first = fit(u, y) else { return nil }
        let keep = u.indices.filter { abs(first.value(at: u[$0]) - y[$0]) <= max(1, 3 * first.rms) }
        guard keep.count < u.count, keep.count >= 6 else { return first }
        return fit(keep.map { u[$0] }, keep.map { y[$0] })
    }

    static func fit(_ u: [Double], _ y: [Double]) -> Quadratic? {
        guard u.count == y.count, u.count >= 3 else { return nil }
        // Normal equations of [1, u, u²], reduced (Gauss–Jordan) alongside the identity: the
        // solution and (XᵀX)⁻¹ at once.
        var m = [[Double]](repeating: [0, 0, 0, 0, 0, 0, 0], count: 3)
        for (ui, yi) in zip(u, y) {
            let row = [1, ui, ui * ui]
            for i in 0..<3 {
                for j in 0..<3 { m[i][j] += row[i] * row[j] }
                m[i][3] += row[i] * yi
            }
        }
        for i in 0..<3 { m[i][4 + i] = 1 }
        for i in 0..<3 {
            guard let p = (i..<3).max(by: { abs(m[$0][i]) < abs(m[$1][i]) }), abs(m[p][i]) > 1e-12 else { return nil }
            m.swapAt(i, p)
            let pivot = m[i][i]
            for j in i..<7 { m[i][j] /= pivot }
            for k in 0..<3 where k != i {
                let f = m[k][i]
                for j in i..<7 { m[k][j] -= f * m[i][j] }
            }
        }
        let a = m[0][3], b = m[1][3], c = m[2][3]
        let ss = zip(u, y).reduce(0.0) { s, p in let d = a + b * p.0 + c * p.0 * p.0 - p.1; return s + d * d }
        return Quadratic(a: a, b: b, c: c, rms: (ss / Double(u.count)).squareRoot(), inverse: (0..<3).flatMap { i in (4..<7).map { m[i][$0] } },
                         count: u.count)
    }
}
