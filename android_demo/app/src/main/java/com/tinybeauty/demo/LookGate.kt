package com.tinybeauty.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Paint
import android.graphics.Path
import android.util.Log
import org.json.JSONObject
import java.io.FileNotFoundException
import java.util.Arrays
import kotlin.math.exp
import kotlin.math.max
import kotlin.math.min

/**
 * The look gate (`makeup/gate.py` `LookGate.apply`, as `student/apply.py` `gated_crop` uses it): the model's
 * change on the crop is clipped, per pixel, to the range the look shows in the region the pixel is in
 * (feathered across region edges); where the look changes nothing the crop keeps the photo's values.
 * The ranges are the card's `"look_gate"`, taken along its `"basis"` rows (lightness and two colour axes: a
 * liner's range stops a red stroke on the eye rim), the change mapped back with `"basis_inverse"`; the regions
 * come from the crop's own face-mesh landmarks with the card's `"regions"` polygons (`makeup/parsing.py`
 * `landmarks_to_labels`; the eye zone of `makeup/metrics.py` `region_masks`). The web demo's `src/gate.js`
 * does the same.
 *
 * The polygons are filled with android.graphics (no anti-aliasing), not cv2.fillPoly's rasteriser: the
 * label map can differ from Python's by a pixel along polygon edges, which the feather smooths over.
 * Not thread-safe: use it on the camera analysis thread. Buffers are allocated once per crop size.
 */
class LookGate private constructor(
    private val low: Array<FloatArray?>,     // per REGIONS entry, change limits along the basis rows; null: closed
    private val high: Array<FloatArray?>,
    private val basis: Array<FloatArray>?,   // rows; null: the limits are per RGB channel (an older card)
    private val inverse: Array<FloatArray>?,
    private val feather: Double,
    private val fill: List<Pair<Int, IntArray>>,   // (label value, landmark indices) in fill order
    private val labelOf: Map<String, Int>,
    private val eyeReach: Double,
    val size: Int,
) {
    /** Which regions the look may change, for the on-screen note. */
    val openRegions: List<String> = REGIONS.filterIndexed { i, _ -> low[i] != null }

    private val n = size
    private val labels = IntArray(n * n)
    private val labelBitmap = Bitmap.createBitmap(n, n, Bitmap.Config.ARGB_8888)
    private val canvas = Canvas(labelBitmap)
    private val paint = Paint().apply { isAntiAlias = false; style = Paint.Style.FILL }
    private val path = Path()
    private val region = FloatArray(n * n)
    private val tmp = FloatArray(n * n)
    private val lo = FloatArray(3 * n * n)
    private val hi = FloatArray(3 * n * n)
    private val weight = FloatArray(n * n)
    private val s = FloatArray(3)   // one pixel's source, change, and change along the basis
    private val d = FloatArray(3)
    private val e = FloatArray(3)

    // cv2.GaussianBlur(ksize (0, 0), sigma) on a float image: ksize = round(sigma * 8 + 1) | 1.
    private val sigma = max(feather * n / 2.0, 1e-3)
    private val kernel: FloatArray = run {
        val k = (Math.rint(sigma * 8.0 + 1.0).toInt()) or 1
        val taps = DoubleArray(k) { i -> val x = i - (k - 1) * 0.5; exp(-0.5 * x * x / (sigma * sigma)) }
        val total = taps.sum()
        FloatArray(k) { i -> (taps[i] / total).toFloat() }
    }

    /**
     * Clip [processed]'s change from [crop] (both `size * size` ARGB) into [out]; [landmarks] are the face's
     * 478 points in crop pixels (`[x0, y0, x1, y1, ...]`).
     */
    fun apply(crop: IntArray, processed: IntArray, landmarks: DoubleArray, out: IntArray) {
        rasterise(landmarks)
        limits()
        for (i in 0 until n * n) {
            val c = crop[i]
            val p = processed[i]
            for (ch in 0 until 3) {
                val shift = 16 - 8 * ch
                s[ch] = ((c shr shift) and 0xFF) / 255f
                d[ch] = ((p shr shift) and 0xFF) / 255f - s[ch]
            }
            if (basis != null) mix(basis, d, e) else d.copyInto(e)
            for (ch in 0 until 3) e[ch] = min(max(e[ch], lo[3 * i + ch]), hi[3 * i + ch])
            if (inverse != null) mix(inverse, e, d) else e.copyInto(d)
            var rgb = 0
            for (ch in 0 until 3) {
                val shift = 16 - 8 * ch
                val v = Math.rint(((s[ch] + d[ch]) * 255f).toDouble()).toInt().coerceIn(0, 255)
                rgb = rgb or (v shl shift)
            }
            out[i] = (c and ALPHA_MASK) or rgb
        }
    }

    /** `makeup/gate.py` `_mix`: y = m x, each output (m0 x0 + m1 x1) + m2 x2 in float. */
    private fun mix(m: Array<FloatArray>, x: FloatArray, y: FloatArray) {
        for (k in 0 until 3) y[k] = (m[k][0] * x[0] + m[k][1] * x[1]) + m[k][2] * x[2]
    }

    /** `landmarks_to_labels`: the card's polygons in order, later ones over earlier ones. */
    private fun rasterise(landmarks: DoubleArray) {
        labelBitmap.eraseColor(0)
        for ((value, ids) in fill) {
            path.rewind()
            for ((k, id) in ids.withIndex()) {
                val x = landmarks[2 * id].toFloat() + 0.5f   // pixel centres at integers, as in Python
                val y = landmarks[2 * id + 1].toFloat() + 0.5f
                if (k == 0) path.moveTo(x, y) else path.lineTo(x, y)
            }
            path.close()
            paint.color = ALPHA_MASK or value
            canvas.drawPath(path, paint)
        }
        labelBitmap.getPixels(labels, 0, n, 0, 0, n, n)
        for (i in labels.indices) labels[i] = labels[i] and 0xFF
    }

    /** `LookGate.limits`: per-region masks, feathered, weighted average of the region limits. */
    private fun limits() {
        Arrays.fill(lo, 0f); Arrays.fill(hi, 0f); Arrays.fill(weight, 0f)
        val eyes = labelOf.getValue("eyes"); val skin = labelOf.getValue("skin")
        val reach = Math.rint(eyeReach * n).toInt()
        for ((r, name) in REGIONS.withIndex()) {
            val lower = low[r] ?: continue
            val upper = high[r] ?: continue
            when (name) {
                "eyes" -> eyeZone(eyes, reach, region)
                "skin" -> {
                    eyeZone(eyes, reach, region)
                    for (i in region.indices) region[i] = if (labels[i] == skin && region[i] == 0f) 1f else 0f
                }
                else -> {
                    val v = labelOf.getValue(name)
                    for (i in region.indices) region[i] = if (labels[i] == v) 1f else 0f
                }
            }
            if (feather > 0) blur(region)
            for (i in 0 until n * n) {
                val w = region[i]
                if (w == 0f) continue
                for (ch in 0 until 3) {
                    lo[3 * i + ch] += w * lower[ch]
                    hi[3 * i + ch] += w * upper[ch]
                }
                weight[i] += w
            }
        }
        for (i in 0 until n * n) {
            val over = max(weight[i], 1f)
            for (ch in 0 until 3) { lo[3 * i + ch] /= over; hi[3 * i + ch] /= over }
        }
    }

    /** `eye_zone`: the eye opening grown by [reach] px (square max filter) as 0/1 into [out]. */
    private fun eyeZone(eyes: Int, reach: Int, out: FloatArray) {
        for (y in 0 until n) {
            for (x in 0 until n) {
                var hit = 0f
                for (j in max(x - reach, 0)..min(x + reach, n - 1)) if (labels[y * n + j] == eyes) { hit = 1f; break }
                tmp[y * n + x] = hit
            }
        }
        for (x in 0 until n) {
            for (y in 0 until n) {
                var hit = 0f
                for (j in max(y - reach, 0)..min(y + reach, n - 1)) if (tmp[j * n + x] != 0f) { hit = 1f; break }
                out[y * n + x] = hit
            }
        }
    }

    /** cv2.GaussianBlur(m, (0, 0), sigma, borderType=BORDER_CONSTANT), in place. */
    private fun blur(m: FloatArray) {
        val r = kernel.size / 2
        for (y in 0 until n) {
            for (x in 0 until n) {
                var acc = 0f
                for (j in max(-r, -x)..min(r, n - 1 - x)) acc += kernel[j + r] * m[y * n + x + j]
                tmp[y * n + x] = acc
            }
        }
        for (y in 0 until n) {
            for (x in 0 until n) {
                var acc = 0f
                for (j in max(-r, -y)..min(r, n - 1 - y)) acc += kernel[j + r] * tmp[(y + j) * n + x]
                m[y * n + x] = acc
            }
        }
    }

    /** A gate, or null with the one line the app shows about running ungated. */
    class Loaded(val gate: LookGate?, val note: String?)

    companion object {
        private const val TAG = "LookGate"
        private const val ALPHA_MASK = -0x1000000  // 0xFF000000

        /** makeup.metrics.FIDELITY_REGIONS: the regions the gate's ranges are given for. */
        val REGIONS = arrayOf("eyes", "lips", "skin", "brows")

        /** The card's `"look_gate"` and `"regions"`; null when the card has no look_gate (an older export). */
        fun fromModelCard(json: String, size: Int): LookGate? {
            val card = JSONObject(json)
            if (card.isNull("look_gate")) return null
            val gate = card.getJSONObject("look_gate")
            val bounds = gate.getJSONObject("bounds")
            val low = arrayOfNulls<FloatArray>(REGIONS.size)
            val high = arrayOfNulls<FloatArray>(REGIONS.size)
            for ((i, name) in REGIONS.withIndex()) {
                if (!bounds.has(name) || bounds.isNull(name)) continue
                val b = bounds.getJSONObject(name)
                val lo = b.getJSONArray("low"); val hi = b.getJSONArray("high")
                low[i] = FloatArray(3) { lo.getDouble(it).toFloat() }
                high[i] = FloatArray(3) { hi.getDouble(it).toFloat() }
            }
            // The basis the limits are in; a card without one (written before it) clips per RGB channel.
            var basis: Array<FloatArray>? = null
            var inverse: Array<FloatArray>? = null
            if (gate.has("basis") && gate.has("basis_inverse")) {
                val rows = gate.getJSONArray("basis"); val inv = gate.getJSONArray("basis_inverse")
                basis = Array(3) { r -> FloatArray(3) { rows.getJSONArray(r).getDouble(it).toFloat() } }
                inverse = Array(3) { r -> FloatArray(3) { inv.getJSONArray(r).getDouble(it).toFloat() } }
            }
            val regions = card.getJSONObject("regions")
            val names = regions.getJSONObject("labels")
            val labelOf = names.keys().asSequence().associateWith { names.getInt(it) }
            val parts = regions.getJSONArray("fill")
            val fill = List(parts.length()) { i ->
                val part = parts.getJSONObject(i)
                val ids = part.getJSONArray("points")
                labelOf.getValue(part.getString("label")) to IntArray(ids.length()) { ids.getInt(it) }
            }
            return LookGate(low, high, basis, inverse, gate.optDouble("feather", 0.02), fill, labelOf,
                            regions.getDouble("eye_reach"), size)
        }

        /** From assets/model_card.json; without a usable look gate, null and the line saying the app runs ungated. */
        fun load(context: Context, size: Int): Loaded = try {
            val text = context.assets.open(Alignment.MODEL_CARD_ASSET).bufferedReader().use { it.readText() }
            val gate = fromModelCard(text, size)
            if (gate == null) Loaded(null, "ungated: ${Alignment.MODEL_CARD_ASSET} has no look_gate (an older export)")
            else Loaded(gate, null)
        } catch (e: FileNotFoundException) {
            Loaded(null, "ungated: ${Alignment.MODEL_CARD_ASSET} is not in assets (the look gate is in the card)")
        } catch (e: Exception) {
            Log.w(TAG, "model card without a usable look gate", e)
            Loaded(null, "ungated: ${Alignment.MODEL_CARD_ASSET} has no usable \"look_gate\"/\"regions\"")
        }
    }
}
